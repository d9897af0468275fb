"""The client over real HTTP (sandbox in a child process): sockets fail like sockets do."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from orchestrator.sandbox import SANDBOX_CREDENTIALS, SandboxControl, SandboxServer
from orchestrator.violet import (
    IntentPayment,
    OrderStatus,
    SkuLine,
    TokenPayment,
    VioletClient,
    VioletOutcomeUnknown,
    VioletRetryableError,
    capture_calls,
    when_request_sent,
)
from orchestrator.violet import transport as transport_module
from tests.fixtures.violet_sandbox_client import CUSTOMER, no_retry_waits, ready_to_submit

__all__ = ["no_retry_waits"]


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as running:
        yield running


@pytest.fixture
async def control(server: SandboxServer) -> AsyncIterator[SandboxControl]:
    async with SandboxControl(server.control_url) as ctl:
        await ctl.reset()
        yield ctl


@pytest.fixture
async def violet(server: SandboxServer, control: SandboxControl) -> AsyncIterator[VioletClient]:
    async with VioletClient(base_url=server.base_url, **SANDBOX_CREDENTIALS) as client:
        yield client


async def test_full_flow_over_http(control: SandboxControl, violet: VioletClient) -> None:
    with capture_calls() as calls:
        cart = await ready_to_submit(
            violet, [196777, 196592], TokenPayment(token="tok_visa"), app_order_id="h-1"
        )
        order = await violet.submit(cart.id, app_order_id="h-1")
    assert order.status == OrderStatus.COMPLETED and len(order.accepted_bags) == 2
    assert calls[0].op == "login" and calls[-1].op == "submit"
    assert all(c.latency_ms > 0 for c in calls)
    assert (await control.stats())["submits"] == {str(cart.id): 1}


async def test_intent_flow_over_http(control: SandboxControl, violet: VioletClient) -> None:
    cart = await ready_to_submit(violet, [300001], IntentPayment(), app_order_id="h-2")
    await control.confirm_payment(cart.id)
    assert (await violet.submit(cart.id)).status == OrderStatus.COMPLETED


async def test_connection_dropped_after_apply(
    control: SandboxControl, violet: VioletClient
) -> None:
    cart = await ready_to_submit(
        violet, [196777], TokenPayment(token="tok_visa"), app_order_id="h-3"
    )
    await control.add_fault("submit", "drop_after_apply")
    with pytest.raises(VioletOutcomeUnknown) as info:
        await violet.submit(cart.id)
    assert info.value.status is None
    assert (await violet.get_cart(cart.id)).is_submitted
    assert (await control.stats())["calls_by_op"]["submit"] == 1


async def test_read_timeout_on_a_write_over_http(
    server: SandboxServer, control: SandboxControl
) -> None:
    async with VioletClient(
        base_url=server.base_url, read_timeout=0.2, total_timeout=5, **SANDBOX_CREDENTIALS
    ) as violet:
        cart = await violet.create_cart(skus=[SkuLine(sku_id=300001)], app_order_id="h-4")
        await control.add_fault("customer", "timeout", latency_ms=5_000)
        with pytest.raises(VioletOutcomeUnknown):
            await violet.apply_customer(cart.id, CUSTOMER)


async def test_nothing_listening_is_retryable_even_for_submit() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with VioletClient(
        base_url=f"http://127.0.0.1:{port}/v1", read_retries=1, **SANDBOX_CREDENTIALS
    ) as violet:
        with capture_calls() as calls, pytest.raises(VioletRetryableError) as info:
            await violet.submit(1)
    assert info.value.status is None and info.value.op == "login"
    assert [(c.op, c.error) for c in calls] == [("login", "VioletRetryableError")] * 2


async def test_a_waiting_write_is_told_once_the_request_has_left_not_when_the_answer_came(
    control: SandboxControl, violet: VioletClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP the signal comes from httpcore's trace of the sent body, mid-call."""
    cart = await violet.create_cart(skus=[SkuLine(sku_id=196777, quantity=1)], app_order_id="h-s")
    await control.add_fault("customer", "latency", count=1, latency_ms=200)
    seen: list[str] = []
    # The hand-over signal is for transports without traces: it must not be what fires here.
    monkeypatch.setattr(transport_module, "request_leaving", lambda: seen.append("handed over"))
    with when_request_sent(lambda: seen.append("request sent")):
        await violet.apply_customer(cart.id, CUSTOMER)
        seen.append("answer")
    # Without a trace of the sent body the signal would come only when the block ends.
    assert seen == ["request sent", "answer"]
