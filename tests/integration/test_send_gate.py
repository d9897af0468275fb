"""The send gate: a create_cart, card payment or submit leaves only while its step is young
enough and its lease surely ours; reads always go; a refusal is known-not-sent and recorded."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from orchestrator.api import Orchestrator
from orchestrator.clock import local_clock
from orchestrator.engine.crashpoints import CrashPoints
from orchestrator.sandbox import SANDBOX_CREDENTIALS, SandboxControl
from orchestrator.violet import (
    SendGate,
    SkuLine,
    VioletClient,
    VioletSendRefused,
    capture_calls,
    send_gate,
)
from tests.fixtures.orchestrator import DIGITAL, TOKEN, checkout_request, make_settings
from tests.fixtures.sandbox import IN_PROCESS_BASE_URL, HttpSandbox

ONE = [SkuLine(sku_id=196777, quantity=1)]


def _fresh() -> SendGate:
    return SendGate(deadline=local_clock() + 60, lease_until=lambda: local_clock() + 60)


def _too_old() -> SendGate:
    return SendGate(deadline=local_clock() - 0.001, lease_until=lambda: local_clock() + 60)


def _lease_gone() -> SendGate:
    return SendGate(deadline=local_clock() + 60, lease_until=lambda: local_clock() - 0.001)


@pytest.fixture(params=["http", "asgi"])
async def violet_and_control(
    request: pytest.FixtureRequest,
    http_sandbox: HttpSandbox,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> AsyncIterator[tuple[VioletClient, SandboxControl]]:
    """Over real HTTP (httpcore reports when the request is written) and in-process (ASGI: it
    does not, so the gate is checked when the request is handed over)."""
    if request.param == "http":
        client = VioletClient(base_url=http_sandbox.base_url, **SANDBOX_CREDENTIALS)
        control = http_sandbox.control
    else:
        client = VioletClient(
            base_url=IN_PROCESS_BASE_URL, transport=sandbox_transport, **SANDBOX_CREDENTIALS
        )
        control = sandbox_control
    async with client:
        yield client, control


async def test_the_gate_refuses_a_stale_send_allows_a_fresh_one_and_never_gates_reads(
    violet_and_control: tuple[VioletClient, SandboxControl],
) -> None:
    violet, control = violet_and_control
    with send_gate(_fresh()):
        cart = await violet.create_cart(skus=ONE, app_order_id="gate-1")

    for gate in (_too_old(), _lease_gone()):
        with capture_calls() as calls, send_gate(gate), pytest.raises(VioletSendRefused) as err:
            await violet.create_cart(skus=ONE, app_order_id="gate-2")
        assert err.value.classification == "retryable" and "not sent" in str(err.value)
        assert [(c.op, c.status, c.error) for c in calls] == [
            ("create_cart", None, "VioletSendRefused")
        ]
        with send_gate(gate):
            assert (await violet.get_cart(cart.id)).id == cart.id  # reads are never gated

    stats = await control.stats()
    assert stats["calls_by_op"]["create_cart"] == 1  # the refused ones never reached Violet
    assert list(stats["carts_by_app_order_id"]) == ["gate-1"]
    # Without a gate nothing is refused, and a refusal left no broken connection behind.
    await violet.create_cart(skus=ONE, app_order_id="gate-3")
    assert (await control.stats())["calls_by_op"]["create_cart"] == 2


class _Freeze(CrashPoints):
    """Freezes the whole process (the event loop included) at one point, like SIGSTOP."""

    def __init__(self, point: str, seconds: float) -> None:
        super().__init__("", enabled=False)
        self.point, self.seconds = point, seconds

    def hit(self, point: str) -> None:
        if point == self.point:
            time.sleep(self.seconds)


async def test_a_submit_refused_by_the_gate_is_left_to_reconcile_and_submitted_once(
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> None:
    settings = make_settings(
        database_url, IN_PROCESS_BASE_URL, total_timeout=0.25, submit_settle_seconds=0.2
    )  # a submit must leave within 0.5 s of its intent write
    frozen = _Freeze("after_intent_commit:submit", seconds=0.7)
    async with Orchestrator(settings, violet_transport=sandbox_transport, crash=frozen) as orch:
        started = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        assert (started.state, started.pending_step, started.in_flight) == (
            "priced",
            "submit",
            True,
        )
        assert started.last_error is not None
        assert started.last_error["type"] == "VioletSendRefused"
        assert started.last_error["class"] == "retryable"
        events = await orch.history(started.id)
        refused = [e for e in events if e.kind == "violet_call" and e.step == "submit"]
        assert [(e.http_status, e.error_class) for e in refused] == [(None, "VioletSendRefused")]
        assert (await sandbox_control.stats())["submits"] == {}
        async with orch.engine.connect() as conn:
            attempt = (
                await conn.exec_driver_sql(
                    "SELECT attempt FROM checkouts WHERE id = %(id)s", {"id": started.id}
                )
            ).scalar_one()
        assert attempt == 0  # the refused attempt is not counted

        frozen.point = ""  # the next worker is not held up
        finished = await orch.run(started.id, retry_wait=10)
        assert finished.state == "submitted", finished.last_error
        kinds = [e.kind for e in await orch.history(started.id)]
        assert "reconciled" in kinds  # Violet was read before the submit was made again
    assert (await sandbox_control.stats())["submits"] == {str(finished.violet_order_id): 1}
