"""Every injectable sandbox fault is classified as the runner needs it, and reads heal alone."""

from __future__ import annotations

import pytest

from orchestrator.violet import (
    OrderStatus,
    SkuLine,
    TokenPayment,
    VioletClient,
    VioletOutcomeUnknown,
    VioletRateLimited,
    VioletRetryableError,
    capture_calls,
)
from tests.fixtures.violet_sandbox_client import (
    Sandbox,
    no_retry_waits,
    ready_to_submit,
    sandbox,
    violet,
)

__all__ = ["no_retry_waits", "sandbox", "violet"]


async def _ready(violet: VioletClient, app_order_id: str) -> int:
    cart = await ready_to_submit(
        violet, [196777], TokenPayment(token="tok_visa"), app_order_id=app_order_id
    )
    return cart.id


async def test_error_503_is_retryable_and_writes_are_not_retried(
    sandbox: Sandbox, violet: VioletClient
) -> None:
    await sandbox.control.add_fault("create_cart", "error", status=503)
    with capture_calls() as calls, pytest.raises(VioletRetryableError) as info:
        await violet.create_cart(skus=[SkuLine(sku_id=196777)], app_order_id="f1")
    assert type(info.value) is VioletRetryableError and info.value.status == 503
    stats = await sandbox.stats()
    assert stats["calls_by_op"]["create_cart"] == 1 and stats["carts_created"] == 0
    assert [(c.op, c.status, c.error) for c in calls][-1] == (
        "create_cart",
        503,
        "VioletRetryableError",
    )


async def test_error_on_a_read_is_retried_transparently(
    sandbox: Sandbox, violet: VioletClient
) -> None:
    cart = await violet.create_cart(skus=[SkuLine(sku_id=196777)], app_order_id="f2")
    await sandbox.control.add_fault("get_cart", "error", status=500, count=2)
    with capture_calls() as calls:
        assert (await violet.get_cart(cart.id)).id == cart.id
    assert [c.status for c in calls] == [500, 500, 200]
    assert (await sandbox.stats())["calls_by_op"]["get_cart"] == 3


async def test_error_500_on_a_write_is_outcome_unknown(
    sandbox: Sandbox, violet: VioletClient
) -> None:
    cart_id = await _ready(violet, "f3")
    await sandbox.control.add_fault("submit", "error", status=500)
    with pytest.raises(VioletOutcomeUnknown):
        await violet.submit(cart_id)
    assert (await sandbox.stats())["calls_by_op"]["submit"] == 1


async def test_rate_limit_carries_retry_after(sandbox: Sandbox, violet: VioletClient) -> None:
    cart_id = await _ready(violet, "f4")
    await sandbox.control.add_fault("submit", "rate_limit", retry_after=30)
    with pytest.raises(VioletRateLimited) as info:
        await violet.submit(cart_id)
    assert info.value.retry_after == 30.0 and info.value.status == 429
    assert info.value.classification == "retryable"
    # a long Retry-After on a read is also handed back rather than slept through
    await sandbox.control.add_fault("get_cart", "rate_limit", retry_after=60)
    with pytest.raises(VioletRateLimited):
        await violet.get_cart(cart_id)
    # so is a short one: a 429 is never retried inline (the caller's budgets wait for it)
    await sandbox.control.add_fault("get_cart", "rate_limit", retry_after=0)
    with pytest.raises(VioletRateLimited):
        await violet.get_cart(cart_id)
    assert (await sandbox.stats())["calls_by_op"]["get_cart"] == 2
    assert (await violet.get_cart(cart_id)).id == cart_id
    assert (await violet.submit(cart_id)).status == OrderStatus.COMPLETED


async def test_timeout_on_a_write_is_outcome_unknown(sandbox: Sandbox) -> None:
    async with sandbox.client(read_timeout=0.2, total_timeout=0.3) as violet:
        cart_id = await _ready(violet, "f5")
        await sandbox.control.add_fault("submit", "timeout", latency_ms=10_000)
        with capture_calls() as calls, pytest.raises(VioletOutcomeUnknown) as info:
            await violet.submit(cart_id)
    assert info.value.status is None and info.value.op == "submit"
    assert [(c.op, c.status, c.error) for c in calls] == [("submit", None, "VioletOutcomeUnknown")]
    assert (await sandbox.stats())["submits"] == {}


async def test_own_total_timeout_is_outcome_unknown(sandbox: Sandbox) -> None:
    # httpx's read timeout is generous; only the client's own deadline can fire.
    async with sandbox.client(read_timeout=30, total_timeout=0.2) as violet:
        cart_id = await _ready(violet, "f6")
        await sandbox.control.add_fault("submit", "delay_after_apply", latency_ms=10_000)
        with pytest.raises(VioletOutcomeUnknown):
            await violet.submit(cart_id)
        # ...and this time Violet did apply it: the reconcile probe shows the order.
        assert (await violet.get_cart(cart_id)).is_submitted
    assert (await sandbox.stats())["submits"] == {str(cart_id): 1}


async def test_drop_after_apply_is_outcome_unknown_and_was_applied(
    sandbox: Sandbox, violet: VioletClient
) -> None:
    cart_id = await _ready(violet, "f7")
    await sandbox.control.add_fault("submit", "drop_after_apply")
    with pytest.raises(VioletOutcomeUnknown) as info:
        await violet.submit(cart_id)
    assert info.value.classification == "outcome_unknown"
    assert (await sandbox.stats())["submits"] == {str(cart_id): 1}
    cart = await violet.get_cart(cart_id)
    assert cart.is_submitted and cart.status == OrderStatus.COMPLETED
    assert (await sandbox.stats())["calls_by_op"]["submit"] == 1, "never re-submitted"


async def test_dropped_create_cart_is_found_by_app_order_id(
    sandbox: Sandbox, violet: VioletClient
) -> None:
    await violet.login()
    await sandbox.control.add_fault("create_cart", "drop_after_apply")
    with pytest.raises(VioletOutcomeUnknown):
        await violet.create_cart(skus=[SkuLine(sku_id=196777)], app_order_id="f8")
    found = await violet.search_orders(app_order_id="f8")
    assert len(found) == 1 and found[0].status == OrderStatus.IN_PROGRESS
    assert (await sandbox.stats())["carts_created"] == 1


async def test_drop_before_apply_on_a_read_is_retried(
    sandbox: Sandbox, violet: VioletClient
) -> None:
    cart = await violet.create_cart(skus=[SkuLine(sku_id=196777)], app_order_id="f9")
    await sandbox.control.add_fault("get_cart", "drop_before_apply", count=2)
    await sandbox.control.add_fault("search_orders", "drop_before_apply")
    assert (await violet.get_cart(cart.id)).id == cart.id
    assert [c.id for c in await violet.search_orders(app_order_id="f9")] == [cart.id]
    stats = await sandbox.stats()
    assert stats["calls_by_op"]["get_cart"] == 3 and stats["calls_by_op"]["search_orders"] == 2
    assert stats["faults_fired"]["drop_before_apply"] == 3


async def test_drop_before_apply_on_a_write_is_not_retried(
    sandbox: Sandbox, violet: VioletClient
) -> None:
    cart_id = await _ready(violet, "f10")
    await sandbox.control.add_fault("submit", "drop_before_apply")
    with pytest.raises(VioletOutcomeUnknown):
        await violet.submit(cart_id)
    stats = await sandbox.stats()
    assert stats["calls_by_op"]["submit"] == 1 and stats["submits"] == {}
    assert not (await violet.get_cart(cart_id)).is_submitted


async def test_read_retries_are_bounded(sandbox: Sandbox) -> None:
    async with sandbox.client(read_retries=2) as violet:
        cart = await violet.create_cart(skus=[SkuLine(sku_id=196777)], app_order_id="f11")
        await sandbox.control.add_fault("get_cart", "error", status=503, count=10)
        with pytest.raises(VioletRetryableError):
            await violet.get_cart(cart.id)
    assert (await sandbox.stats())["calls_by_op"]["get_cart"] == 3


async def test_login_failure_before_a_write_is_retried(
    sandbox: Sandbox, violet: VioletClient
) -> None:
    await sandbox.control.add_fault("login", "error", status=503)
    cart = await violet.create_cart(skus=[SkuLine(sku_id=196777)], app_order_id="f12")
    stats = await sandbox.stats()
    assert stats["calls_by_op"]["login"] == 2 and stats["calls_by_op"]["create_cart"] == 1
    assert stats["carts_created"] == 1 and cart.id > 0


async def test_latency_fault_is_just_slow(sandbox: Sandbox, violet: VioletClient) -> None:
    cart = await violet.create_cart(skus=[SkuLine(sku_id=196777)], app_order_id="f13")
    await sandbox.control.add_fault("get_cart", "latency", latency_ms=20)
    with capture_calls() as calls:
        await violet.get_cart(cart.id)
    assert [(c.status, c.error) for c in calls] == [(200, None)]
