"""Cart building: create, read, delete and price a cart; the customer, address and shipping
endpoints live in `customers` and `shipping`, what they all share in `cart_core`.

Each operation is a plain synchronous function ``(state, call) -> (status, body)`` so that a
Violet call is applied atomically and the HTTP layer stays a thin wrapper. This module also
re-exports the endpoints and shared names other sandbox modules reach through it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from orchestrator.sandbox.cart_core import (
    Call,
    Result,
    add_error,
    blocking_error,
    index_cart,
    load_cart,
    price,
    require_in_progress,
    set_app_order_id,
    unprice,
)
from orchestrator.sandbox.catalog import CURRENCIES, MERCHANTS, SKUS, Sku, convert
from orchestrator.sandbox.customers import (
    apply_customer,
    parse_address,
    parse_customer,
    set_billing_address,
    set_customer,
    set_shipping_address,
)
from orchestrator.sandbox.errors import bad_request, not_found
from orchestrator.sandbox.intents import new_intent
from orchestrator.sandbox.model import Bag, Cart, OrderSku, remorse_end, render_cart, timestamp
from orchestrator.sandbox.shipping import set_shipping, shipping_available
from orchestrator.sandbox.state import SandboxState
from orchestrator.sandbox.validation import (
    opt_bool,
    opt_int,
    opt_str,
    optional_object,
    req_int,
    require_object,
)

__all__ = [
    "MAX_QUANTITY",
    "Call",
    "Result",
    "add_error",
    "apply_customer",
    "blocking_error",
    "create_cart",
    "delete_cart",
    "get_cart",
    "load_cart",
    "parse_address",
    "parse_customer",
    "price",
    "price_cart",
    "require_in_progress",
    "set_app_order_id",
    "set_billing_address",
    "set_shipping",
    "set_shipping_address",
    "shipping_available",
    "unprice",
]

MAX_QUANTITY = 1000  # Violet's newer model clamps larger quantities to 1000 (README §6 quirk e)


def _parse_skus(raw: Any) -> list[tuple[Sku, int]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_request("invalid_field", "skus must be an array of {sku_id, quantity}")
    wanted: dict[int, int] = {}
    for i, item in enumerate(raw):
        prefix = f"skus[{i}]."
        data = require_object(item, f"skus[{i}]")
        sku_id = req_int(data, "sku_id", prefix)
        quantity = opt_int(data, "quantity", prefix)
        if quantity is None:
            quantity = 1
        if quantity < 1:
            raise bad_request("invalid_field", f"{prefix}quantity must be >= 1")
        wanted[sku_id] = min(wanted.get(sku_id, 0) + quantity, MAX_QUANTITY)
    result = []
    for sku_id, quantity in wanted.items():
        sku = SKUS.get(sku_id)
        if sku is None:
            raise not_found("sku_not_found", f"sku_id {sku_id} not found")
        result.append((sku, quantity))
    return result


def _add_sku(state: SandboxState, cart: Cart, sku: Sku, quantity: int, now: datetime) -> None:
    bag = next((b for b in cart.bags if b.merchant.id == sku.merchant_id), None)
    if bag is None:
        bag = Bag(
            id=state.bag_ids(),
            merchant=MERCHANTS[sku.merchant_id],
            date_created=timestamp(now),
            remorse_period_ends=remorse_end(now),
        )
        cart.bags.append(bag)
    stock = state.stock.get(sku.id)
    available = stock is None or stock >= quantity
    bag.skus.append(
        OrderSku(
            id=state.order_sku_ids(),
            sku=sku,
            quantity=quantity,
            price=convert(sku.price, cart.currency),
            available=available,
        )
    )
    if not available:
        cart.errors.append(
            add_error(state, cart, bag, "EXTERNAL_ADD_ITEM",
                      f"SKU {sku.id} ({sku.name}) is out of stock", sku)
        )  # fmt: skip
    if sku.async_error is not None:
        cart.pending_errors.append(
            add_error(state, cart, bag, "EXTERNAL_ADD_ITEM", sku.async_error, sku)
        )


def create_cart(state: SandboxState, call: Call) -> Result:
    body = optional_object(call.body)
    currency = body.get("base_currency", call.query.get("base_currency")) or "USD"
    if not isinstance(currency, str):
        raise bad_request("invalid_field", "base_currency must be a string")
    currency = currency.upper()
    if currency not in CURRENCIES:
        raise bad_request(
            "invalid_field",
            f"base_currency {currency!r} is not supported (one of {', '.join(CURRENCIES)})",
        )
    skus = _parse_skus(body.get("skus"))
    app_order_id = opt_str(body, "app_order_id") or call.query.get("app_order_id") or None
    referral_id = opt_str(body, "referral_id") or call.query.get("referral_id") or None
    wallet = opt_bool(body, "wallet_based_checkout") or False
    parsed_customer = None
    if body.get("customer") is not None:
        parsed_customer = parse_customer(body["customer"], "customer")

    now = datetime.now(UTC)
    cart = Cart(
        id=state.cart_ids(),
        app_id=state.config.app_id,
        token=uuid4().hex,
        currency=currency,
        date_created=timestamp(now),
        date_last_modified=timestamp(now),
        app_order_id=app_order_id,
        referral_id=referral_id,
        wallet_based_checkout=wallet,
    )
    for sku, quantity in skus:
        _add_sku(state, cart, sku, quantity, now)
    if parsed_customer is not None:
        set_customer(cart, parsed_customer)
    if wallet:  # wallet carts carry a PaymentIntent from the start (README S20)
        cart.intent = new_intent(state, cart)
    state.carts[cart.id] = cart
    state.carts_created += 1
    index_cart(state, cart)
    return 200, render_cart(cart)


def get_cart(state: SandboxState, call: Call) -> Result:
    return 200, render_cart(load_cart(state, call.path_id))


def delete_cart(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id)
    require_in_progress(cart)
    cart.deleted = True
    state.deleted_carts.append(cart.id)
    return 204, None


def price_cart(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id)
    require_in_progress(cart)
    price(cart)
    return 200, render_cart(cart)
