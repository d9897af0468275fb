"""Applying webhook events: once per event, bags only forward, never racing the checkout path.

Events enter the inbox as the receiver stores them (`store.inbox.insert`, the receiver's one
statement); their bodies are orders as the sandbox renders them after real bag moves. The
applier and the recovery job run against real PostgreSQL; the end-to-end test sends them from
the sandbox over real HTTP to a `webhooks serve` process.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchestrator.api import Orchestrator
from orchestrator.checkout import Checkout
from orchestrator.recovery import RecoveryJob
from orchestrator.sandbox import SANDBOX_CREDENTIALS, SandboxControl
from orchestrator.store import bags, inbox, merchants
from orchestrator.webhooks.apply import WebhookApplier
from tests.fixtures.orchestrator import (
    DIGITAL,
    TOKEN,
    checkout_request,
    make_settings,
    submit_applied_but_answer_lost,
)
from tests.fixtures.webhooks import receiver_env, served_receiver


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    async with bags.pool(database_url) as opened:
        yield opened


@pytest.fixture
def applier(pool: Any) -> WebhookApplier:
    return WebhookApplier(pool, worker="test-applier", backoff_base=0.01, backoff_cap=0.05)


async def deliver(
    pool: Any, body: dict[str, Any], *, topic: str = "ORDER_UPDATED", event_id: str | None = None
) -> str:
    """Store an event as the receiver does; returns its id."""
    event_id = event_id or f"evt-{uuid.uuid4().hex}"
    event = inbox.InboxEvent(
        event_id=event_id,
        event_type=topic,
        body=body,
        violet_order_id=body.get("id"),
        merchant_id=body.get("id") if topic.startswith("MERCHANT_") else None,
    )
    async with pool.connection() as conn:
        await inbox.insert(conn, event)
    return event_id


async def query(pool: Any, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cursor = await conn.execute(sql, params or {})
        return await cursor.fetchall()


async def inbox_state(pool: Any, event_id: str) -> tuple[Any, ...]:
    rows = await query(
        pool,
        "SELECT state, attempts, reason FROM webhook_inbox WHERE event_id = %(id)s",
        {"id": event_id},
    )
    return rows[0]


async def bag_rows(pool: Any, checkout_id: uuid.UUID) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        return await bags.bag_rows(conn, checkout_id)


async def audit(pool: Any, checkout_id: uuid.UUID, kind: str) -> list[dict[str, Any]]:
    rows = await query(
        pool,
        "SELECT detail FROM checkout_events WHERE checkout_id = %(id)s AND kind = %(kind)s "
        "ORDER BY seq",
        {"id": checkout_id, "kind": kind},
    )
    return [row[0] for row in rows]


async def submitted(orch: Orchestrator, **kwargs: Any) -> Checkout:
    checkout = await orch.start(checkout_request(**kwargs))
    assert checkout.state == "submitted", checkout
    return checkout


async def move(control: SandboxControl, checkout: Checkout, action: str) -> dict[str, Any]:
    """Move the checkout's first bag at the sandbox; the order as Violet shows it after."""
    await asyncio.sleep(0.003)  # Violet's timestamps have milliseconds: one move per tick
    assert checkout.violet_order_id is not None
    bag_id = checkout.bags[0]["bag_id"]
    return await control.move_bag(checkout.violet_order_id, bag_id, action)


async def test_a_redelivered_event_is_applied_once(
    orch: Orchestrator, sandbox_control: SandboxControl, pool: Any, applier: WebhookApplier
) -> None:
    checkout = await submitted(orch)
    shipped = await move(sandbox_control, checkout, "ship")
    event_id = await deliver(pool, shipped, topic="ORDER_SHIPPED")
    first = await applier.apply_pending()
    await deliver(pool, shipped, topic="ORDER_SHIPPED", event_id=event_id)  # Violet again
    second = await applier.apply_pending()

    assert (first.applied, second.applied, second.settled) == (1, 0, 0)
    assert await inbox_state(pool, event_id) == ("applied", 1, None)
    [row] = await bag_rows(pool, checkout.id)
    assert (row["status"], row["fulfillment_status"], row["last_event_id"]) == (
        "ACCEPTED",
        "SHIPPED",
        event_id,
    )
    [applied] = await audit(pool, checkout.id, "webhook_applied")
    assert applied["event_id"] == event_id and applied["event_type"] == "ORDER_SHIPPED"
    changes = await query(
        pool,
        "SELECT detail FROM checkout_changes WHERE checkout_id = %(id)s AND kind = 'bag_status'",
        {"id": checkout.id},
    )
    assert [c[0]["to"] for c in changes] == ["ACCEPTED"]


async def test_out_of_order_events_never_move_a_bag_back(
    orch: Orchestrator, sandbox_control: SandboxControl, pool: Any, applier: WebhookApplier
) -> None:
    checkout = await submitted(orch)
    assert checkout.violet_order_id is not None
    accepted = (await orch.client.get_order(checkout.violet_order_id)).model_dump(mode="json")
    shipped = await move(sandbox_control, checkout, "ship")
    completed = await move(sandbox_control, checkout, "complete")
    refunded = await move(sandbox_control, checkout, "refund")
    bag_id = checkout.bags[0]["bag_id"]

    # The accepted news first, then the same status with newer fields: fulfilment moves on.
    await deliver(pool, accepted, topic="ORDER_ACCEPTED")
    await deliver(pool, shipped, topic="ORDER_SHIPPED")
    await applier.apply_pending()
    [row] = await bag_rows(pool, checkout.id)
    assert (row["status"], row["fulfillment_status"]) == ("ACCEPTED", "SHIPPED")

    # The refund arrives before the completion it followed, and a stale copy of the acceptance.
    await deliver(pool, refunded, topic="ORDER_REFUNDED")
    await deliver(pool, completed, topic="ORDER_COMPLETED")
    await deliver(pool, accepted, topic="ORDER_UPDATED")
    assert (await applier.apply_pending()).applied == 3
    [row] = await bag_rows(pool, checkout.id)
    bag_total = next(b for b in refunded["bags"] if b["id"] == bag_id)["total"]
    assert (row["status"], row["refunded_amount"]) == ("REFUNDED", bag_total)
    assert (await orch.get(checkout.id)).violet_status == refunded["status"]
    trail = await audit(pool, checkout.id, "webhook_applied")
    assert [t["changed"] for t in trail] == [True, True, True, False, False]
    moves = await query(
        pool,
        "SELECT detail->>'from', detail->>'to' FROM checkout_changes "
        "WHERE checkout_id = %(id)s AND kind = 'bag_status' ORDER BY id",
        {"id": checkout.id},
    )
    assert moves == [(None, "ACCEPTED"), ("ACCEPTED", "REFUNDED")]


async def test_an_event_waits_while_the_checkout_path_holds_the_lease(
    orch: Orchestrator, sandbox_control: SandboxControl, pool: Any, applier: WebhookApplier
) -> None:
    await sandbox_control.add_fault("submit", "latency", latency_ms=1500, count=1)
    request = checkout_request(skus=DIGITAL, payment=TOKEN)
    driving = asyncio.create_task(orch.start(request))
    for _ in range(200):  # until the submit is on its way, under the checkout path's lease
        row = await orch.repo.get_by_app_order_id(request["app_order_id"])
        if row is not None and row.pending_step == "submit" and row.in_flight:
            break
        await asyncio.sleep(0.01)
    assert row is not None and row.violet_order_id is not None and row.lease_owner is not None
    # What Violet sends once it has taken the order (read now, it is still a cart).
    cart = (await orch.client.get_order(row.violet_order_id)).model_dump(mode="json")
    accepted = [{**bag, "status": "ACCEPTED"} for bag in cart["bags"]]
    order = {**cart, "status": "COMPLETED", "bags": accepted}
    event_id = await deliver(pool, order, topic="ORDER_ACCEPTED")

    waited = await applier.apply_pending()
    assert (waited.applied, waited.retried) == (0, 1)
    state, attempts, reason = await inbox_state(pool, event_id)
    assert (state, attempts) == ("pending", 1) and "busy" in reason
    assert await audit(pool, row.id, "webhook_applied") == []

    finished = await driving
    assert finished.state == "submitted"
    after = await applier.run_until_idle()
    assert after.applied == 1
    assert (await inbox_state(pool, event_id))[0] == "applied"
    assert [b["status"] for b in await bag_rows(pool, row.id)] == ["ACCEPTED"]
    assert (await sandbox_control.cart(row.violet_order_id))["submits"] == 1


@pytest.mark.parametrize(
    "event_id",
    [
        None,
        # A hex id can hold a Luhn-valid run of 13+ digits: the secret tripwire must not make
        # the change feed refuse the event, and with it the outcome the event proves.
        "evt-c4111111111111111cca2d70fb0fcb8c",
    ],
    ids=["event", "card-like-event-id"],
)
async def test_an_event_proving_a_lost_submit_makes_recovery_settle_it_at_once(
    orch: Orchestrator, sandbox_control: SandboxControl, pool: Any, event_id: str | None
) -> None:
    first, _ = await submit_applied_but_answer_lost(orch, sandbox_control)
    assert first.violet_order_id is not None
    # The checkout waits out its settle window, as after a read that found the cart not yet
    # submitted while Violet was still running the submit (a minute here: beyond until-idle's
    # horizon, so recovery alone would not settle it in this run).
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE checkouts SET next_attempt_at = now() + interval '60 seconds' "
            "WHERE id = %(id)s",
            {"id": first.id},
        )
    job = RecoveryJob(orch.worker)
    idle = await job.run("until-idle")
    assert idle.claimed == 0 and (await orch.get(first.id)).state == "priced"

    order = (await orch.client.get_order(first.violet_order_id)).model_dump(mode="json")
    event_id = await deliver(pool, order, topic="ORDER_UPDATED", event_id=event_id)
    summary = await job.run("until-idle")

    settled = await orch.get(first.id)
    assert (settled.state, summary.webhooks_applied, summary.reconciled) == ("submitted", 1, 1)
    assert (await inbox_state(pool, event_id))[0] == "applied"
    [applied] = await audit(pool, first.id, "webhook_applied")
    assert "submit_evidence" in applied
    cart = await sandbox_control.cart(first.violet_order_id)
    assert (cart["submits"], cart["duplicate_submits"]) == (1, 0)


async def test_events_for_orders_that_are_not_ours_are_ignored_in_the_inbox_only(
    orch: Orchestrator, pool: Any, applier: WebhookApplier
) -> None:
    await submitted(orch)
    event_id = await deliver(pool, {"id": 987654321, "status": "COMPLETED", "bags": []})
    other = await deliver(pool, {"id": 5}, topic="PRODUCT_UPDATED")
    summary = await applier.apply_pending()

    assert (summary.applied, summary.ignored) == (0, 2)
    state, _, reason = await inbox_state(pool, event_id)
    assert state == "ignored" and "987654321 is not one of our checkouts" in reason
    assert (await inbox_state(pool, other))[0] == "ignored"
    assert await query(pool, "SELECT 1 FROM checkout_events WHERE kind LIKE 'webhook%%'") == []
    assert await query(pool, "SELECT 1 FROM checkout_bags") == []


async def test_a_disabled_merchant_parks_its_checkouts_and_enabling_it_resumes_them(
    database_url: str, sandbox_transport: httpx.AsyncBaseTransport, pool: Any
) -> None:
    # A 503 on applying the customer leaves the checkout (its cart made, bags known) waiting out
    # a retry backoff: what recovery would drive next, and what a disabled merchant would fail.
    settings = make_settings(database_url, "http://sandbox/v1", backoff_base=60.0, backoff_cap=60)
    async with (
        Orchestrator(settings, violet_transport=sandbox_transport) as orch,
        SandboxControl(transport=sandbox_transport) as control,
    ):
        await control.add_fault("customer", "error", status=503, count=1)
        waiting = await orch.start(checkout_request())
        assert (waiting.state, waiting.pending_step) == ("created", "apply_customer")
        merchant_id = waiting.bags[0]["merchant_id"]
        await control.add_fault("customer", "error", status=503, count=1)
        other = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        assert other.pending_step == "apply_customer"
        assert other.bags[0]["merchant_id"] != merchant_id
        applier = WebhookApplier(pool, worker="test-applier")

        await deliver(pool, {"id": merchant_id, "status": "DISABLED"}, topic="MERCHANT_DISABLED")
        assert (await applier.apply_pending()).applied == 1
        parked = await orch.get(waiting.id)
        assert parked.waiting_reason == merchants.park_reason(merchant_id)
        assert parked.state == "created" and parked.next_attempt_at is not None
        assert (parked.next_attempt_at - parked.updated_at).days > 365
        assert (await orch.get(other.id)).waiting_reason is None  # not that merchant's
        assert [d["merchant_id"] for d in await audit(pool, waiting.id, "merchant_parked")] == [
            merchant_id
        ]

        await deliver(pool, {"id": merchant_id, "status": "ENABLED"}, topic="MERCHANT_ENABLED")
        summary = await RecoveryJob(orch.worker).run("until-idle")
        assert summary.webhooks_applied == 1
        resumed = await orch.get(waiting.id)
        assert (resumed.state, resumed.waiting_reason) == ("submitted", None)
        assert len(await audit(pool, waiting.id, "merchant_resumed")) == 1


async def test_an_event_whose_handling_keeps_failing_is_marked_failed_and_kept(
    orch: Orchestrator, pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = await submitted(orch)
    assert checkout.violet_order_id is not None
    order = (await orch.client.get_order(checkout.violet_order_id)).model_dump(mode="json")
    event_id = await deliver(pool, order)

    def broken(order: Any, *, fallback_at: Any) -> bags.OrderNews:
        raise RuntimeError("a bug while reading the order")

    monkeypatch.setattr(bags, "news_from_order", broken)
    applier = WebhookApplier(pool, worker="test-applier", max_attempts=2, backoff_base=0.0)
    first = await applier.apply_pending()
    second = await applier.run_until_idle()
    assert (first.retried, second.failed) == (1, 1)
    state, attempts, reason = await inbox_state(pool, event_id)
    assert (state, attempts) == ("failed", 2) and "a bug while reading" in reason
    assert await bag_rows(pool, checkout.id) == []

    monkeypatch.undo()  # fixed: an operator puts it back in the queue, and it applies
    async with pool.connection() as conn:
        assert await inbox.retry_failed(conn, [event_id]) == 1
    assert (await applier.apply_pending()).applied == 1
    assert [r["status"] for r in await bag_rows(pool, checkout.id)] == ["ACCEPTED"]


async def test_end_to_end_sandbox_to_receiver_to_inbox_to_bags(
    database_url: str, orch: Orchestrator, sandbox_control: SandboxControl, pool: Any
) -> None:
    env = receiver_env(database_url)
    env["VIOLET_WEBHOOK_SECRETS"] = str(SANDBOX_CREDENTIALS["app_secret"])
    checkout = await submitted(orch)
    with served_receiver(env) as receiver:
        await sandbox_control.register_webhook(receiver.url)
        await move(sandbox_control, checkout, "ship")
        await move(sandbox_control, checkout, "complete")
        for _ in range(500):
            stored = await query(pool, "SELECT event_type FROM webhook_inbox ORDER BY received_at")
            if len(stored) == 2:
                break
            await asyncio.sleep(0.01)
    assert [s[0] for s in stored] == ["ORDER_SHIPPED", "ORDER_COMPLETED"]
    summary = await RecoveryJob(orch.worker).run("until-idle")
    assert summary.webhooks_applied == 2
    [row] = await bag_rows(pool, checkout.id)
    assert (row["status"], row["fulfillment_status"]) == ("COMPLETED", "SHIPPED")
    assert len(await audit(pool, checkout.id, "webhook_applied")) == 2
    assert await query(pool, "SELECT count(*) FROM webhook_inbox WHERE state <> 'applied'") == [
        (0,)
    ]


async def test_a_refund_seen_settles_the_refund_that_was_sent(
    orch: Orchestrator, sandbox_control: SandboxControl, pool: Any, applier: WebhookApplier
) -> None:
    checkout = await submitted(orch)
    bag_id = checkout.bags[0]["bag_id"]
    action_id = uuid.uuid4()
    async with pool.connection() as conn:  # a refund the host asked for, sent, outcome unknown
        await conn.execute(
            "INSERT INTO bag_actions (id, checkout_id, bag_id, kind, state, amount, actor, "
            "sent_at) VALUES (%(id)s, %(checkout)s, %(bag)s, 'refund', 'sent', 100, "
            "'support:ada', now())",
            {"id": action_id, "checkout": checkout.id, "bag": bag_id},
        )
    shipped = await move(sandbox_control, checkout, "ship")
    refunded = await move(sandbox_control, checkout, "refund")
    await deliver(pool, shipped, topic="ORDER_SHIPPED")
    assert (await applier.apply_pending()).applied == 1
    assert (await query(pool, "SELECT state FROM bag_actions"))[0][0] == "sent"  # not yet
    event_id = await deliver(pool, refunded, topic="ORDER_REFUNDED")
    assert (await applier.apply_pending()).applied == 1

    [(state, answer)] = await query(pool, "SELECT state, answer FROM bag_actions")
    assert state == "succeeded" and answer["settled_by"] == event_id
    [settled] = await audit(pool, checkout.id, "bag_action_settled")
    assert (settled["action_id"], settled["actor"]) == (str(action_id), "support:ada")
    feed = await query(
        pool,
        "SELECT kind FROM checkout_changes WHERE checkout_id = %(id)s ORDER BY id",
        {"id": checkout.id},
    )
    assert [f[0] for f in feed][-2:] == ["bag_status", "action_settled"]


async def test_a_signed_body_replayed_under_another_order_header_is_not_applied_to_it(
    orch: Orchestrator,
    sandbox_control: SandboxControl,
    database_url: str,
    pool: Any,
    applier: WebhookApplier,
) -> None:
    """Violet signs the body only; the headers are the sender's to choose. One captured signed
    body (order A, its bag canceled) replayed with `X-Violet-Order-Id: <order B>` and a fresh
    event id is kept `ignored` with why; checkout B gains no bag, no feed entry, no status."""
    import json

    from orchestrator.webhooks.receive import WebhookReceiver
    from orchestrator.webhooks.signature import sign

    secret = "whsec-test-0123456789"
    a = await submitted(orch, payment=TOKEN)
    b = await submitted(orch, payment=TOKEN)
    assert a.violet_order_id is not None and b.violet_order_id is not None
    canceled_a = await move(sandbox_control, a, "cancel")
    raw = json.dumps(canceled_a).encode()  # as Violet sent it: signed with the app secret
    headers = {
        "content-type": "application/json",
        "x-violet-hmac": sign(raw, secret),
        "x-violet-event-id": f"evt-{uuid.uuid4().hex}",  # unsigned: fresh, passes dedupe
        "x-violet-topic": "ORDER_CANCELED",
        "x-violet-order-id": str(b.violet_order_id),  # unsigned: points at B
    }
    receiver = WebhookReceiver(secrets=[secret], database_url=database_url)
    try:
        transport = httpx.ASGITransport(app=receiver)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as http:
            answer = await http.post("/", content=raw, headers=headers)
    finally:
        await receiver.close()
    assert answer.status_code == 200 and "ignored" in answer.json()  # signed: kept, refused

    await applier.run_until_idle()
    state, _, reason = await inbox_state(pool, headers["x-violet-event-id"])
    assert state == "ignored" and "X-Violet-Order-Id" in reason
    for checkout in (a, b):
        assert await bag_rows(pool, checkout.id) == []
        assert await audit(pool, checkout.id, "webhook_applied") == []
    feed = await query(
        pool,
        "SELECT detail FROM checkout_changes WHERE checkout_id = %(id)s AND kind = 'bag_status'",
        {"id": b.id},
    )
    assert feed == [], f"B's host feed reports A's bag: {feed}"


async def test_news_of_another_order_is_refused_by_record_and_nothing_is_written(
    orch: Orchestrator, sandbox_control: SandboxControl, pool: Any, applier: WebhookApplier
) -> None:
    """`record` checks the news is of the checkout's own order, whoever calls it: an event in
    the inbox naming B with A's body (or a read-back handed the wrong order) changes nothing."""
    a = await submitted(orch)
    b = await submitted(orch)
    assert b.violet_order_id is not None
    canceled_a = await move(sandbox_control, a, "cancel")

    done = await bags.record_read(pool, "test", b.id, canceled_a, via="readback")
    assert done.refused is not None and str(b.violet_order_id) in done.refused
    assert (done.moved, done.busy) == ([], None)

    event = inbox.InboxEvent(  # as a receiver that trusted the header would have stored it
        event_id=f"evt-{uuid.uuid4().hex}",
        event_type="ORDER_CANCELED",
        body=canceled_a,
        violet_order_id=b.violet_order_id,
    )
    async with pool.connection() as conn:
        await inbox.insert(conn, event)
    assert (await applier.apply_pending()).ignored == 1
    assert (await inbox_state(pool, event.event_id))[0] == "ignored"
    assert await bag_rows(pool, b.id) == []
    assert await audit(pool, b.id, "webhook_applied") == []
