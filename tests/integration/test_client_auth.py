"""Token lifecycle against the sandbox: expiry mid-flow, single-flight refresh, re-login."""

from __future__ import annotations

import asyncio
import time

import pytest

from orchestrator.sandbox import SANDBOX_CREDENTIALS
from orchestrator.violet import (
    OrderStatus,
    SkuLine,
    TokenPayment,
    VioletAuthError,
    VioletClient,
)
from tests.fixtures.violet_sandbox_client import (
    Sandbox,
    no_retry_waits,
    ready_to_submit,
    sandbox,
    violet,
)

__all__ = ["no_retry_waits", "sandbox", "violet"]


async def test_token_expiring_mid_flow_is_refreshed(sandbox: Sandbox, violet: VioletClient) -> None:
    cart = await ready_to_submit(violet, [196777], TokenPayment(token="tok_visa"), app_order_id="t")
    await sandbox.control.expire_tokens()  # Violet now answers 401 "Token has expired"
    order = await violet.submit(cart.id)
    assert order.status == OrderStatus.COMPLETED
    stats = await sandbox.stats()
    assert stats["calls_by_op"]["refresh"] == 1 and stats["calls_by_op"]["login"] == 1
    # the refused submit was not applied, the retried one was: exactly one order
    assert stats["submits"] == {str(cart.id): 1}
    submit_statuses = [c["status"] for c in await sandbox.control.calls("submit")]
    assert submit_statuses == [401, 200]


async def test_short_lived_jwt_is_refreshed_ahead_of_exp_single_flight(
    sandbox: Sandbox, violet: VioletClient
) -> None:
    await sandbox.control.configure(token_ttl_seconds=2)
    cart = await violet.create_cart(skus=[SkuLine(sku_id=196777)], app_order_id="ttl")
    await sandbox.control.configure(token_ttl_seconds=3600)
    # Wait until the JWT's own exp says "refresh now" (10% of its 2 s life before exp).
    auth = violet._auth
    assert auth is not None and auth.refresh_at < auth.expires_at < time.monotonic() + 2.5
    await asyncio.sleep(max(0.0, auth.refresh_at - time.monotonic()) + 0.02)
    carts = await asyncio.gather(*(violet.get_cart(cart.id) for _ in range(50)))
    assert {c.id for c in carts} == {cart.id}
    stats = await sandbox.stats()
    assert stats["calls_by_op"]["refresh"] == 1 and stats["calls_by_op"]["login"] == 1
    statuses = [c["status"] for c in await sandbox.control.calls("get_cart")]
    assert statuses == [200] * 50, "refreshed before Violet had to refuse anything"


async def test_revoked_refresh_token_falls_back_to_login(
    sandbox: Sandbox, violet: VioletClient
) -> None:
    cart = await violet.create_cart(skus=[SkuLine(sku_id=196777)], app_order_id="rv")
    await sandbox.control.revoke_refresh_tokens()
    await sandbox.control.expire_tokens()
    assert (await violet.get_cart(cart.id)).id == cart.id
    stats = await sandbox.stats()
    assert stats["calls_by_op"]["refresh"] == 1 and stats["calls_by_op"]["login"] == 2


@pytest.mark.parametrize(
    "override", [{"password": "wrong-password"}, {"app_secret": "wrong-secret"}, {"app_id": 1}]
)
async def test_bad_credentials(sandbox: Sandbox, override: dict[str, object]) -> None:
    async with sandbox.client(**override) as client:
        with pytest.raises(VioletAuthError) as info:
            await client.get_cart(80000)
    assert info.value.classification == "auth" and info.value.status in (401, 403)
    assert (await sandbox.stats())["calls_by_op"].get("get_cart", 0) == 0
    assert SANDBOX_CREDENTIALS["app_secret"] not in str(info.value)
