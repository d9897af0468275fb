"""The sandbox sends Violet's webhooks over real HTTP: signed order events from its own process to
a receiver listening here, retried on Violet's (compressed) schedule, spoiled on request by
duplicate, reorder, delay, drop and bad-signature faults, every attempt on the control surface."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.sandbox import SANDBOX_CREDENTIALS, SandboxConfig, SandboxControl, SandboxServer
from orchestrator.sandbox.sender import FAILURES_BEFORE_PAUSE, PAUSES, count_failure
from orchestrator.sandbox.webhooks import Webhook
from tests.fixtures.sandbox import HttpSandbox, RawViolet, prepare_cart

SECRET = str(SANDBOX_CREDENTIALS["app_secret"])
FAST = 0.00001
"""Violet's ~24 h of retries in under a second."""


def signature(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def topic(self) -> str:
        return self.headers["x-violet-topic"]

    @property
    def event_id(self) -> str:
        return self.headers["x-violet-event-id"]

    @property
    def signed(self) -> bool:
        return hmac.compare_digest(self.headers["x-violet-hmac"], signature(self.body))

    def order(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


@dataclass
class Receiver:
    """A host's webhook endpoint: records every request, answers from `answers` (then 200)."""

    url: str = ""
    got: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    verify: bool = False
    """Answer 401 to a bad signature, as a real receiver does."""

    async def endpoint(self, request: Request) -> Response:
        received = Received(dict(request.headers), await request.body())
        self.got.append(received)
        if self.verify and not received.signed:
            return Response(status_code=401)
        return Response(status_code=self.answers.pop(0) if self.answers else 200)

    def topics(self) -> list[str]:
        return [r.topic for r in self.got]

    async def wait_for(self, count: int) -> list[Received]:
        await until(lambda: len(self.got) >= count, f"{count} deliveries")
        return self.got


async def until(check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def until_async(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = Starlette(routes=[Route("/violet", hook.endpoint, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    hook.url = f"http://127.0.0.1:{sock.getsockname()[1]}/violet"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await until(lambda: server.started, "the receiver to start")
    yield hook
    server.should_exit = True
    await task
    sock.close()


@pytest.fixture
async def violet(http_sandbox: HttpSandbox) -> AsyncIterator[RawViolet]:
    await http_sandbox.control.configure(
        webhook_time_scale=FAST, webhook_timeout_seconds=10, canceled_event="ORDER_CANCELED"
    )
    async with httpx.AsyncClient(base_url=http_sandbox.base_url) as client:
        raw = RawViolet(client)
        await raw.login()
        yield raw


async def submitted(violet: RawViolet, skus: list[int] | None = None) -> dict[str, Any]:
    cart = await prepare_cart(violet, skus or [196777])
    response = await violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    assert response.status_code == 200, response.text
    order: dict[str, Any] = response.json()
    return order


async def test_submit_sends_signed_accepted_and_updated_events(
    violet: RawViolet, http_sandbox: HttpSandbox, receiver: Receiver
) -> None:
    control = http_sandbox.control
    webhook_id = await control.register_webhook(receiver.url)
    order = await submitted(violet)
    bag_id = order["bags"][0]["id"]
    got = await receiver.wait_for(2)
    assert [r.topic for r in got] == ["ORDER_ACCEPTED", "ORDER_UPDATED"]
    for r in got:
        assert r.signed
        assert r.headers["x-violet-order-id"] == str(order["id"])
        assert r.headers["x-violet-bag-id"] == str(bag_id)
        assert r.headers["x-violet-webhook-id"] == str(webhook_id)
        assert r.headers["x-violet-entity-length"] == str(len(r.body))
        assert r.headers["content-type"] == "application/json"
        body = r.order()
        assert body["id"] == order["id"] and body["status"] == "COMPLETED"
        assert body["bags"][0]["status"] == "ACCEPTED"
    assert got[0].event_id != got[1].event_id
    events = await control.webhook_events(order_id=order["id"])
    assert [(e["event_type"], e["status"], e["attempts"]) for e in events] == [
        ("ORDER_ACCEPTED", "SUCCEEDED", 1),
        ("ORDER_UPDATED", "SUCCEEDED", 1),
    ]
    attempts = await control.webhook_attempts()
    assert [(a["event_id"], a["status_code"]) for a in attempts] == [
        (int(r.event_id), 200) for r in got
    ]


async def test_no_webhook_no_events(violet: RawViolet, http_sandbox: HttpSandbox) -> None:
    order = await submitted(violet)
    assert await http_sandbox.control.webhook_events(order_id=order["id"]) == []


async def test_a_failed_delivery_is_retried_until_it_succeeds(
    violet: RawViolet, http_sandbox: HttpSandbox, receiver: Receiver
) -> None:
    await http_sandbox.control.register_webhook(receiver.url, events=["ORDER_ACCEPTED"])
    receiver.answers = [500, 503]
    order = await submitted(violet)
    got = await receiver.wait_for(3)
    assert {r.event_id for r in got} == {got[0].event_id}  # one event, redelivered
    assert all(r.signed and r.body == got[0].body for r in got)

    async def succeeded() -> bool:
        (event,) = await http_sandbox.control.webhook_events(order_id=order["id"])
        return bool(event["status"] == "SUCCEEDED")

    await until_async(succeeded, "the event to succeed")
    (event,) = await http_sandbox.control.webhook_events(order_id=order["id"])
    assert (event["attempts"], event["status_code"]) == (3, 200)
    attempts = await http_sandbox.control.webhook_attempts(event["id"])
    assert [(a["attempt"], a["status_code"], a["ok"]) for a in attempts] == [
        (1, 500, False), (2, 503, False), (3, 200, True),
    ]  # fmt: skip


async def test_an_event_fails_after_ten_attempts(
    violet: RawViolet, http_sandbox: HttpSandbox, receiver: Receiver
) -> None:
    await http_sandbox.control.register_webhook(receiver.url, events=["ORDER_ACCEPTED"])
    receiver.answers = [500] * 20
    order = await submitted(violet)

    async def failed() -> bool:
        (event,) = await http_sandbox.control.webhook_events(order_id=order["id"])
        return bool(event["status"] == "FAILED")

    await until_async(failed, "the event to fail")
    await asyncio.sleep(0.2)
    assert len(receiver.got) == 10
    (event,) = await http_sandbox.control.webhook_events(order_id=order["id"])
    assert (event["attempts"], event["status_code"]) == (10, 500)


async def test_a_refused_connection_is_a_failed_attempt(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/violet"
    await http_sandbox.control.register_webhook(url, events=["ORDER_ACCEPTED"])
    order = await submitted(violet)

    async def failed() -> bool:
        (event,) = await http_sandbox.control.webhook_events(order_id=order["id"])
        return bool(event["status"] == "FAILED")

    await until_async(failed, "the event to fail")
    attempts = await http_sandbox.control.webhook_attempts()
    assert len(attempts) == 10
    assert all(a["status_code"] is None and "ConnectError" in a["error"] for a in attempts)


async def test_duplicate_fault_delivers_the_same_event_twice(
    violet: RawViolet, http_sandbox: HttpSandbox, receiver: Receiver
) -> None:
    control = http_sandbox.control
    await control.register_webhook(receiver.url, events=["ORDER_ACCEPTED"])
    await control.add_webhook_fault("duplicate")
    await submitted(violet)
    got = await receiver.wait_for(2)
    await asyncio.sleep(0.1)
    assert len(receiver.got) == 2
    assert got[0].event_id == got[1].event_id and got[0].body == got[1].body
    assert all(r.signed for r in got)
    copies = [a["copy"] for a in await control.webhook_attempts()]
    assert copies == ["primary", "duplicate"]


async def test_reorder_fault_sends_the_next_event_first(
    violet: RawViolet, http_sandbox: HttpSandbox, receiver: Receiver
) -> None:
    control = http_sandbox.control
    order = await submitted(violet)
    bag_id = order["bags"][0]["id"]
    await control.register_webhook(receiver.url)
    await control.add_webhook_fault("reorder", event_type="ORDER_SHIPPED")
    await control.move_bag(order["id"], bag_id, "ship")
    await asyncio.sleep(0.2)
    assert receiver.got == []  # held until another event has gone
    await control.move_bag(order["id"], bag_id, "complete")
    got = await receiver.wait_for(2)
    assert [r.topic for r in got] == ["ORDER_COMPLETED", "ORDER_SHIPPED"]
    shipped, completed = got[1].order(), got[0].order()
    assert shipped["bags"][0]["fulfillment_status"] == "SHIPPED"
    assert shipped["bags"][0]["status"] == "ACCEPTED"  # the body is the order at its time
    assert completed["bags"][0]["status"] == "COMPLETED"


async def test_a_held_event_can_be_released(
    violet: RawViolet, http_sandbox: HttpSandbox, receiver: Receiver
) -> None:
    control = http_sandbox.control
    order = await submitted(violet)
    await control.register_webhook(receiver.url)
    await control.add_webhook_fault("reorder")
    await control.move_bag(order["id"], order["bags"][0]["id"], "ship")
    assert await control.release_webhook_events() == 1
    assert [r.topic for r in await receiver.wait_for(1)] == ["ORDER_SHIPPED"]


async def test_delay_fault_lets_later_events_overtake(
    violet: RawViolet, http_sandbox: HttpSandbox, receiver: Receiver
) -> None:
    control = http_sandbox.control
    order = await submitted(violet)
    bag_id = order["bags"][0]["id"]
    await control.register_webhook(receiver.url)
    await control.add_webhook_fault("delay", event_type="ORDER_SHIPPED", latency_ms=400)
    await control.move_bag(order["id"], bag_id, "ship")
    await control.move_bag(order["id"], bag_id, "deliver")
    got = await receiver.wait_for(2)
    assert [r.topic for r in got] == ["ORDER_DELIVERED", "ORDER_SHIPPED"]


async def test_drop_fault_loses_the_event_and_a_read_fills_the_gap(
    violet: RawViolet, http_sandbox: HttpSandbox, receiver: Receiver
) -> None:
    control = http_sandbox.control
    order = await submitted(violet)
    bag_id = order["bags"][0]["id"]
    await control.register_webhook(receiver.url)
    await control.add_webhook_fault("drop", event_type="ORDER_SHIPPED")
    await control.move_bag(order["id"], bag_id, "ship")
    await control.move_bag(order["id"], bag_id, "complete")
    await receiver.wait_for(1)
    await asyncio.sleep(0.2)
    assert receiver.topics() == ["ORDER_COMPLETED"]
    events = await control.webhook_events(order_id=order["id"])
    assert [(e["event_type"], e["status"]) for e in events] == [
        ("ORDER_SHIPPED", "DROPPED"), ("ORDER_COMPLETED", "SUCCEEDED"),
    ]  # fmt: skip
    read = (await violet.get(f"/orders/{order['id']}")).json()
    assert read["bags"][0]["fulfillment_status"] == "SHIPPED"


async def test_bad_signature_fault_fails_verification_and_is_retried(
    violet: RawViolet, http_sandbox: HttpSandbox, receiver: Receiver
) -> None:
    control = http_sandbox.control
    order = await submitted(violet)
    bag_id = order["bags"][0]["id"]
    receiver.verify = True
    await control.register_webhook(receiver.url)
    await control.add_webhook_fault("bad_signature", event_type="ORDER_SHIPPED")
    await control.move_bag(order["id"], bag_id, "ship")
    await control.move_bag(order["id"], bag_id, "complete")

    async def settled() -> bool:
        events = await control.webhook_events(order_id=order["id"])
        return all(e["status"] in ("FAILED", "SUCCEEDED") for e in events)

    await until_async(settled, "both events to settle")
    shipped = [r for r in receiver.got if r.topic == "ORDER_SHIPPED"]
    completed = [r for r in receiver.got if r.topic == "ORDER_COMPLETED"]
    assert len(shipped) == 10 and not any(r.signed for r in shipped)
    assert len(completed) == 1 and completed[0].signed
    statuses = {e["event_type"]: e["status"] for e in await control.webhook_events()}
    assert statuses == {"ORDER_SHIPPED": "FAILED", "ORDER_COMPLETED": "SUCCEEDED"}


async def test_cancel_refund_and_their_spellings(
    violet: RawViolet, http_sandbox: HttpSandbox, receiver: Receiver
) -> None:
    control = http_sandbox.control
    order = await submitted(violet, [196777, 196592])
    first, second = (b["id"] for b in order["bags"])
    await control.configure(canceled_event="ORDER_CANCELLED")
    await control.register_webhook(receiver.url)
    await control.move_bag(order["id"], first, "cancel")
    await control.move_bag(order["id"], second, "refund", amount=100)
    got = await receiver.wait_for(2)
    assert [r.topic for r in got] == ["ORDER_CANCELLED", "ORDER_REFUNDED"]
    refunded = got[1].order()
    assert [b["status"] for b in refunded["bags"]] == ["CANCELED", "PARTIALLY_REFUNDED"]
    refunds = [t for t in refunded["bags"][1]["transactions"] if t["type"] == "REFUND"]
    assert [t["amount"] for t in refunds] == [100]


async def test_a_silently_failed_cancel_is_answered_202_and_shown_by_a_webhook(
    violet: RawViolet, http_sandbox: HttpSandbox, receiver: Receiver
) -> None:
    control = http_sandbox.control
    order = await submitted(violet)
    bag_id = order["bags"][0]["id"]
    await control.register_webhook(receiver.url)
    await control.add_fault("cancel_bag", "silent_failure")
    answer = await violet.post(f"/orders/{order['id']}/bags/{bag_id}/cancel", json={})
    assert answer.status_code == 202 and answer.json()["status"] == "CANCELED"
    (news,) = await receiver.wait_for(1)
    assert news.topic == "ORDER_UPDATED" and news.signed
    assert news.order()["bags"][0]["status"] == "ACCEPTED"


async def test_merchant_disable_and_enable_events(
    violet: RawViolet, http_sandbox: HttpSandbox, receiver: Receiver
) -> None:
    control = http_sandbox.control
    await control.register_webhook(receiver.url, events=["MERCHANT_DISABLED", "MERCHANT_ENABLED"])
    await control.set_merchant(10068, enabled=False)
    await control.set_merchant(10068, enabled=True)
    got = await receiver.wait_for(2)
    assert [r.topic for r in got] == ["MERCHANT_DISABLED", "MERCHANT_ENABLED"]
    assert [r.order()["status"] for r in got] == ["DISABLED", "ENABLED"]
    assert all(r.signed and "x-violet-order-id" not in r.headers for r in got)


async def test_resend_is_a_new_event_naming_its_source(
    violet: RawViolet, http_sandbox: HttpSandbox, receiver: Receiver
) -> None:
    control = http_sandbox.control
    await control.register_webhook(receiver.url, events=["ORDER_ACCEPTED"])
    await submitted(violet)
    (first,) = await receiver.wait_for(1)
    await control.resend_webhook_event(int(first.event_id))
    again = (await receiver.wait_for(2))[1]
    assert again.event_id != first.event_id and again.body == first.body
    assert again.headers["x-violet-event-id-source"] == first.event_id


async def test_reset_forgets_webhooks(http_sandbox: HttpSandbox, receiver: Receiver) -> None:
    await http_sandbox.control.register_webhook(receiver.url)
    await http_sandbox.control.reset()
    assert await http_sandbox.control.webhooks() == []


async def test_bad_registrations_are_refused(http_sandbox: HttpSandbox) -> None:
    async with httpx.AsyncClient(base_url=http_sandbox.control_url) as control:
        for body in ({"url": "ftp://x"}, {"url": 5}, {"url": "http://x", "events": ["NOPE"]}):
            response = await control.post("/webhooks", json=body)
            assert response.status_code == 400, body
        response = await control.post("/webhook_faults", json={"kind": "eat"})
        assert response.status_code == 400


def test_too_many_failures_pause_then_disable_a_webhook() -> None:
    hook = Webhook(1, "http://x", None, "now")
    now = 1000.0
    for round_ in range(len(PAUSES)):
        for _ in range(FAILURES_BEFORE_PAUSE + 1):
            count_failure(hook, now, 1.0)
        assert hook.status == "PAUSED" and hook.paused_until == now + PAUSES[round_]
        hook.status = "ACTIVE"
    for _ in range(FAILURES_BEFORE_PAUSE):
        count_failure(hook, now, 1.0)
    assert hook.status == "ACTIVE"  # 50 failures are tolerated
    count_failure(hook, now, 1.0)
    assert hook.status == "DISABLED"


def test_failures_outside_the_window_do_not_count() -> None:
    hook = Webhook(1, "http://x", None, "now")
    for second in range(FAILURES_BEFORE_PAUSE * 2):
        count_failure(hook, second * 40.0, 1.0)  # one every 40 s: ~45 in any 30 minutes
    assert hook.status == "ACTIVE"


async def test_a_served_sandbox_takes_its_webhook_time_scale_from_its_config() -> None:
    with SandboxServer(SandboxConfig(webhook_time_scale=0.5)) as server:
        async with SandboxControl(server.control_url) as control:
            assert (await control.config())["webhook_time_scale"] == 0.5
