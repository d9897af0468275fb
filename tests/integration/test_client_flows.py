"""Whole checkouts against the in-process sandbox: every payment kind, every outcome."""

from __future__ import annotations

import pytest

from orchestrator.violet import (
    BagStatus,
    IntentPayment,
    OrderStatus,
    SkuLine,
    TokenPayment,
    VioletCartErrors,
    VioletClient,
    VioletNotFound,
    VioletPaymentDeclined,
    VioletPermanentError,
    capture_calls,
)
from tests.fixtures.violet_sandbox_client import (
    CUSTOMER,
    Sandbox,
    card,
    no_retry_waits,
    ready_to_submit,
    sandbox,
    violet,
)

__all__ = ["no_retry_waits", "sandbox", "violet"]  # fixtures used by this module


async def test_single_merchant_physical_with_token(sandbox: Sandbox, violet: VioletClient) -> None:
    with capture_calls() as calls:
        cart = await ready_to_submit(
            violet, [196777], TokenPayment(token="tok_visa"), app_order_id="a-1"
        )
        assert cart.needs_shipping and cart.priced and cart.has_payment
        assert not cart.is_submitted
        order = await violet.submit(cart.id, app_order_id="a-1")
    assert order.status == OrderStatus.COMPLETED and order.is_submitted
    assert [b.status for b in order.bags] == [BagStatus.ACCEPTED]
    assert order.total == cart.total and order.app_order_id == "a-1"
    assert [c.op for c in calls] == [
        "login",
        "create_cart",
        "customer",
        "shipping_address",
        "shipping_available",
        "set_shipping",
        "payment",
        "price",
        "submit",
    ]
    assert all(c.status == 200 and c.error is None for c in calls)
    assert calls[-1].response is not None
    assert calls[-1].response["bags"][0]["status"] == "ACCEPTED"
    assert calls[-1].path == f"/checkout/cart/{cart.id}/submit"
    assert (await sandbox.stats())["submits"] == {str(cart.id): 1}


async def test_digital_goods_skip_shipping(violet: VioletClient) -> None:
    cart = await ready_to_submit(
        violet, [300001, 300002], card("4242424242424242"), app_order_id="d"
    )
    assert not cart.needs_shipping and cart.bags[0].shipping_method is None
    order = await violet.submit(cart.id)
    assert order.status == OrderStatus.COMPLETED


async def test_multi_merchant_with_card(violet: VioletClient) -> None:
    cart = await ready_to_submit(
        violet, [196777, 196592, 196650], card("4242424242424242"), app_order_id="m"
    )
    assert sorted(b.merchant_id or 0 for b in cart.bags) == [10068, 10189]
    order = await violet.submit(cart.id)
    assert len(order.accepted_bags) == 2 and order.rejected_bags == []
    assert order.payment_method is not None and order.payment_method.get("last_four") == "4242"


async def test_intent_payment_confirmed_by_the_shopper(
    sandbox: Sandbox, violet: VioletClient
) -> None:
    cart = await ready_to_submit(violet, [196777], IntentPayment(), app_order_id="i")
    assert cart.has_payment
    assert cart.stripe_key and cart.payment_intent_client_secret is not None
    assert "_secret_" in cart.payment_intent_client_secret.get_secret_value()
    with pytest.raises(VioletPermanentError) as info:
        await violet.submit(cart.id)
    assert info.value.error_type == "payment_intent_not_confirmed"
    cart = await violet.update_payment(cart.id)
    await sandbox.control.confirm_payment(cart.id)
    order = await violet.submit(cart.id)
    assert order.status == OrderStatus.COMPLETED


async def test_wallet_cart_has_an_intent_from_the_start(violet: VioletClient) -> None:
    cart = await violet.create_cart(
        skus=[SkuLine(sku_id=196777)],
        app_order_id="w",
        customer=CUSTOMER,
        wallet_based_checkout=True,
    )
    assert cart.wallet_based_checkout and cart.payment_intent_client_secret is not None
    assert cart.customer is not None and cart.customer.email == "ada@example.com"


@pytest.mark.parametrize(
    ("payment", "error_type"),
    [
        (card("4000000000000002"), "card_declined"),
        (card("4000000000009995"), "insufficient_funds"),
        (TokenPayment(token="tok_chargeDeclined"), "card_declined"),
    ],
)
async def test_declined_payment_at_submit(
    sandbox: Sandbox, violet: VioletClient, payment: TokenPayment, error_type: str
) -> None:
    cart = await ready_to_submit(violet, [196777], payment, app_order_id="x")
    with pytest.raises(VioletPaymentDeclined) as info:
        await violet.submit(cart.id)
    assert info.value.status == 400 and info.value.error_type == error_type
    assert info.value.classification == "permanent"
    assert not (await violet.get_cart(cart.id)).is_submitted
    assert (await sandbox.stats())["submits"] == {}


async def test_bad_card_data_is_refused_at_payment(violet: VioletClient) -> None:
    cart = await violet.create_cart(skus=[SkuLine(sku_id=196777)], app_order_id="e")
    await violet.apply_customer(cart.id, CUSTOMER)
    with pytest.raises(VioletPaymentDeclined) as info:
        await violet.apply_payment(cart.id, card("4000000000000127"))
    assert info.value.error_type == "incorrect_cvc"


@pytest.mark.parametrize(
    "payment", [card("4000002760003184"), TokenPayment(token="tok_threeDSecure2Required")]
)
async def test_three_d_secure(
    sandbox: Sandbox, violet: VioletClient, payment: TokenPayment
) -> None:
    cart = await ready_to_submit(violet, [196777], payment, app_order_id="3ds")
    pending = await violet.submit(cart.id, app_order_id="3ds")
    assert pending.status == OrderStatus.REQUIRES_ACTION and pending.is_submitted
    assert pending.payment_intent_client_secret is not None
    # Still waiting: submitting again changes nothing.
    assert (await violet.submit(cart.id)).status == OrderStatus.REQUIRES_ACTION
    await sandbox.control.confirm_payment(cart.id)
    order = await violet.submit(cart.id, app_order_id="3ds")
    assert order.status == OrderStatus.COMPLETED
    assert (await sandbox.stats())["submits"] == {str(cart.id): 1}


async def test_multi_merchant_partial_rejection_is_a_cart(violet: VioletClient) -> None:
    cart = await ready_to_submit(
        violet, [196777, 400001], TokenPayment(token="tok_visa"), app_order_id="p"
    )
    order = await violet.submit(cart.id)
    assert [b.merchant_id for b in order.accepted_bags] == [10068]
    assert [b.merchant_id for b in order.rejected_bags] == [10400]
    assert order.rejected_bags[0].financial_status == "VOIDED"
    assert [e.type for e in order.errors] == ["EXTERNAL_SUBMIT_CART"]
    assert order.errors[0].bag_id == order.rejected_bags[0].id


async def test_single_bag_rejection_is_permanent(violet: VioletClient) -> None:
    cart = await ready_to_submit(violet, [400001], TokenPayment(token="tok_visa"), app_order_id="r")
    with pytest.raises(VioletPermanentError) as info:
        await violet.submit(cart.id)
    assert not isinstance(info.value, VioletPaymentDeclined)
    assert info.value.status == 400


async def test_out_of_stock_raises_with_the_cart(violet: VioletClient) -> None:
    with pytest.raises(VioletCartErrors) as info:
        await violet.create_cart(skus=[SkuLine(sku_id=196999)], app_order_id="oos")
    err = info.value
    assert err.cart.id > 0 and err.status == 200 and err.errors
    assert err.error_type is not None and err.errors[0].type == err.error_type
    # a read returns the same errors as data
    cart = await violet.get_cart(err.cart.id)
    assert [e.type for e in cart.errors] == [e.type for e in err.errors]


async def test_async_error_appears_on_a_later_call(violet: VioletClient) -> None:
    cart = await violet.create_cart(skus=[SkuLine(sku_id=196888)], app_order_id="async")
    assert cart.errors == []
    seen = await violet.get_cart(cart.id)
    assert seen.errors and seen.errors[0].type == "EXTERNAL_ADD_ITEM"
    with pytest.raises(VioletCartErrors) as info:
        await violet.apply_customer(cart.id, CUSTOMER)
    assert info.value.error_type == "EXTERNAL_ADD_ITEM"


async def test_unknown_sku_is_not_found(violet: VioletClient) -> None:
    with pytest.raises(VioletNotFound):
        await violet.create_cart(skus=[SkuLine(sku_id=123)], app_order_id="nf")
    with pytest.raises(VioletNotFound):
        await violet.get_cart(999_999)


async def test_search_get_delete_cancel(sandbox: Sandbox, violet: VioletClient) -> None:
    open_cart = await violet.create_cart(skus=[SkuLine(sku_id=196777)], app_order_id="s-1")
    assert [c.id for c in await violet.search_orders(app_order_id="s-1")] == [open_cart.id]
    assert await violet.search_orders(app_order_id="s-1", exclude_in_progress=True) == []
    assert await violet.search_orders(app_order_id="nobody") == []
    await violet.delete_cart(open_cart.id)
    assert open_cart.id in (await sandbox.stats())["deleted_carts"]

    cart = await ready_to_submit(
        violet, [196777], TokenPayment(token="tok_visa"), app_order_id="s-2"
    )
    order = await violet.submit(cart.id)
    fetched = await violet.get_order(order.id)
    assert fetched.id == order.id and fetched.status == OrderStatus.COMPLETED
    cancellation = await violet.cancel_order(order.id, reason="test")
    assert cancellation.order_id == order.id and cancellation.status
    assert (await violet.get_order(order.id)).status == OrderStatus.CANCELED
