"""Cart building: create, read, delete, customer, addresses, shipping and pricing.

Each operation is a plain synchronous function ``(state, call) -> (status, body)`` so that a
Violet call is applied atomically and the HTTP layer stays a thin wrapper.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from orchestrator.sandbox.catalog import CURRENCIES, MERCHANTS, SKUS, Sku, convert, tax_lines
from orchestrator.sandbox.errors import SandboxError, bad_request, not_found
from orchestrator.sandbox.intents import new_intent
from orchestrator.sandbox.model import (
    IN_PROGRESS,
    USER_ID,
    Bag,
    Cart,
    OrderSku,
    remorse_end,
    render_cart,
    timestamp,
)
from orchestrator.sandbox.state import SandboxState
from orchestrator.sandbox.validation import (
    opt_bool,
    opt_int,
    opt_str,
    optional_object,
    req_int,
    req_str,
    require_object,
)

MAX_QUANTITY = 1000  # Violet's newer model clamps larger quantities to 1000 (README §6 quirk e)

Result = tuple[int, Any]


@dataclass(slots=True)
class Call:
    """One Violet request as the operations see it."""

    op: str
    path_id: int | None
    query: Mapping[str, str]
    body: Any
    headers: Mapping[str, str]
    bag_id: int | None = None
    silent_failure: bool = False
    """A ``silent_failure`` fault: a cancel or refund answers as if it worked and does nothing."""


# -- shared helpers ----------------------------------------------------------------------------


def load_cart(state: SandboxState, cart_id: int | None, error: str = "cart_not_found") -> Cart:
    """The cart, with Violet's asynchronous errors surfacing from the call after they arose."""
    cart = state.carts.get(cart_id) if cart_id is not None else None
    if cart is None or cart.deleted:
        kind = "order" if error == "order_not_found" else "cart"
        raise not_found(error, f"{kind} {cart_id} not found")
    if cart.pending_errors:
        cart.errors.extend(cart.pending_errors)
        cart.pending_errors.clear()
    return cart


def require_in_progress(cart: Cart) -> None:
    if cart.status != IN_PROGRESS:
        raise bad_request(
            "cart_not_in_progress",
            f"cart {cart.id} is {cart.status}; only IN_PROGRESS carts can be changed",
        )


def unprice(cart: Cart) -> None:
    """Anything that can change taxes or totals makes Violet re-price before submit."""
    cart.priced = False
    for bag in cart.bags:
        bag.taxes = []
        bag.tax_total = 0


def price(cart: Cart) -> None:
    """Taxes per bag on its physical goods, from the shipping (else billing) address."""
    address = cart.shipping_address or cart.billing_address or {}
    country, region = address.get("country"), address.get("state")
    for bag in cart.bags:
        lines = tax_lines(country, region, bag.physical_sub_total)
        bag.taxes = [
            {
                "order_id": cart.id,
                "merchant_id": bag.merchant.id,
                "state": region,
                "description": description,
                "rate": rate,
                "amount": amount,
            }
            for description, rate, amount in lines
        ]
        bag.tax_total = sum(amount for _, _, amount in lines)
    cart.priced = True
    if cart.intent is not None and not cart.intent.confirmed:
        cart.intent.amount = cart.total  # Violet keeps its PaymentIntent in step (S18)
    cart.touch()


def add_error(
    state: SandboxState, cart: Cart, bag: Bag, type_: str, message: str, entity: Sku | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "id": state.error_ids(),
        "order_id": cart.id,
        "bag_id": bag.id,
        "type": type_,
        "message": message,
        "date_created": timestamp(),
        "platform": bag.merchant.platform,
    }
    if entity is not None:
        error["entity_id"] = str(entity.id)
        error["entity_type"] = "SKU"
    else:
        error["entity_id"] = str(bag.id)
        error["entity_type"] = "BAG"
    return error


# -- parsing -----------------------------------------------------------------------------------

_ADDRESS_REQUIRED = ("address_1", "city", "state", "postal_code", "country")
_ADDRESS_OPTIONAL = ("address_2", "phone", "name", "first_name", "last_name", "email")


def parse_address(
    raw: Any, type_: str, field: str, names: tuple[str, str] | None = None
) -> dict[str, Any]:
    """An OrderAddress (README §2.3); ``names`` fills first/last name from the customer."""
    data = require_object(raw, field)
    prefix = field + "."
    address: dict[str, Any] = {key: req_str(data, key, prefix) for key in _ADDRESS_REQUIRED}
    for key in _ADDRESS_OPTIONAL:
        value = opt_str(data, key, prefix)
        if value is not None:
            address[key] = value
    if len(address["country"]) != 2 or not address["country"].isalpha():
        raise bad_request("invalid_field", f"{prefix}country must be an ISO-3166 alpha-2 code")
    address["country"] = address["country"].upper()
    address.setdefault("address_2", "")
    address.setdefault("phone", "")
    if names is not None:
        address.setdefault("first_name", names[0])
        address.setdefault("last_name", names[1])
    first, last = address.get("first_name", ""), address.get("last_name", "")
    address.setdefault("name", f"{first} {last}".strip())
    address["type"] = type_
    return address


def _as_billing(shipping: dict[str, Any]) -> dict[str, Any]:
    return {**shipping, "type": "BILLING"}


def _as_shipping(billing: dict[str, Any]) -> dict[str, Any]:
    return {**billing, "type": "SHIPPING"}


def parse_customer(
    raw: Any, field: str
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """Customer record plus the shipping and billing addresses it carries, if any."""
    data = require_object(raw, field)
    prefix = "" if field == "request body" else field + "."
    email = req_str(data, "email", prefix)
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise bad_request("invalid_field", f"{prefix}email must be an email address")
    first = req_str(data, "first_name", prefix)
    last = req_str(data, "last_name", prefix)
    same = opt_bool(data, "same_address", prefix) or False
    customer: dict[str, Any] = {
        "user_id": USER_ID,
        "first_name": first,
        "last_name": last,
        "email": email,
        "name": f"{first} {last}",
    }
    external_id = opt_str(data, "external_id", prefix)
    if external_id is not None:
        customer["external_id"] = external_id
    shipping = billing = None
    if data.get("shipping_address") is not None:
        shipping = parse_address(
            data["shipping_address"], "SHIPPING", prefix + "shipping_address", (first, last)
        )
    if data.get("billing_address") is not None:
        billing = parse_address(
            data["billing_address"], "BILLING", prefix + "billing_address", (first, last)
        )
    if same:
        if shipping is not None and billing is None:
            billing = _as_billing(shipping)
        elif billing is not None and shipping is None:
            shipping = _as_shipping(billing)
    return customer, shipping, billing


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


def _index(state: SandboxState, cart: Cart) -> None:
    if cart.app_order_id is not None:
        state.by_app_order_id.setdefault(cart.app_order_id, []).append(cart.id)


def set_app_order_id(state: SandboxState, cart: Cart, app_order_id: str) -> None:
    if cart.app_order_id is None:
        cart.app_order_id = app_order_id
        _index(state, cart)


# -- operations --------------------------------------------------------------------------------


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
        _apply_customer(cart, parsed_customer)
    if wallet:  # wallet carts carry a PaymentIntent from the start (README S20)
        cart.intent = new_intent(state, cart)
    state.carts[cart.id] = cart
    state.carts_created += 1
    _index(state, cart)
    return 200, render_cart(cart)


def get_cart(state: SandboxState, call: Call) -> Result:
    return 200, render_cart(load_cart(state, call.path_id))


def delete_cart(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id)
    require_in_progress(cart)
    cart.deleted = True
    state.deleted_carts.append(cart.id)
    return 204, None


def _apply_customer(
    cart: Cart,
    parsed: tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None],
) -> None:
    customer, shipping, billing = parsed
    cart.customer = customer
    if shipping is not None:
        cart.shipping_address = shipping
    if billing is not None:
        cart.billing_address = billing
    unprice(cart)
    cart.touch()


def apply_customer(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id)
    require_in_progress(cart)
    _apply_customer(cart, parse_customer(call.body, "request body"))
    return 200, render_cart(cart)


def _names(cart: Cart) -> tuple[str, str] | None:
    if cart.customer is None:
        return None
    return cart.customer["first_name"], cart.customer["last_name"]


def set_shipping_address(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id)
    require_in_progress(cart)
    cart.shipping_address = parse_address(call.body, "SHIPPING", "request body", _names(cart))
    unprice(cart)
    cart.touch()
    return 200, render_cart(cart)


def set_billing_address(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id)
    require_in_progress(cart)
    cart.billing_address = parse_address(call.body, "BILLING", "request body", _names(cart))
    cart.touch()
    return 200, render_cart(cart)


def _require_shipping_address(cart: Cart, doing: str) -> None:
    if cart.shipping_address is None:
        raise bad_request(
            "shipping_address_required",
            f"shipping_address is required before {doing}: apply it with POST "
            f"/checkout/cart/{cart.id}/shipping_address or with the customer",
        )


def shipping_available(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id)
    _require_shipping_address(cart, "listing shipping methods")
    result = []
    for bag in cart.bags:
        if not bag.needs_shipping:
            continue
        methods = []
        for m in bag.merchant.shipping_methods:
            method: dict[str, Any] = {
                "bag_id": bag.id,
                "label": m.label,
                "price": convert(m.price, cart.currency),
                "shipping_method_id": m.shipping_method_id,
            }
            if m.carrier is not None:
                method["carrier"] = m.carrier
            if m.external_id is not None:
                method["external_id"] = m.external_id
            methods.append(method)
        result.append({"bag_id": bag.id, "shipping_methods": methods})
    return 200, result


def set_shipping(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id)
    require_in_progress(cart)
    if cart.customer is None:
        raise bad_request(
            "customer_required",
            f"customer is required before setting shipping: POST /checkout/cart/{cart.id}/customer",
        )
    _require_shipping_address(cart, "setting shipping methods")
    if not isinstance(call.body, list):
        raise bad_request(
            "invalid_request_body",
            "request body must be a JSON array of {bag_id, shipping_method_id}",
        )
    bags = {b.id: b for b in cart.bags}
    chosen: list[tuple[Bag, Any]] = []
    for i, item in enumerate(call.body):
        prefix = f"[{i}]."
        data = require_object(item, f"[{i}]")
        bag_id = req_int(data, "bag_id", prefix)
        method_id = req_str(data, "shipping_method_id", prefix)
        bag = bags.get(bag_id)
        if bag is None:
            raise bad_request(
                "bag_not_found", f"{prefix}bag_id {bag_id} is not a bag of cart {cart.id}"
            )
        if not bag.needs_shipping:
            raise bad_request(
                "shipping_not_required", f"{prefix}bag_id {bag_id} holds no physical goods"
            )
        method = next(
            (m for m in bag.merchant.shipping_methods if m.shipping_method_id == method_id), None
        )
        if method is None:
            raise bad_request(
                "invalid_shipping_method",
                f"{prefix}shipping_method_id {method_id!r} is not available for bag {bag_id}",
            )
        chosen.append((bag, method))
    for bag, method in chosen:
        bag.shipping_method = {
            "id": state.shipping_record_ids(),
            "bag_id": bag.id,
            "merchant_id": bag.merchant.id,
            "shipping_method_id": method.shipping_method_id,
            "label": method.label,
            "price": convert(method.price, cart.currency),
            "type": method.type,
        }
    # Violet quirk (README §2.4, S5): the answer is sometimes left unpriced whatever price_cart
    # says. Here it always is, so clients must check `priced`/`tax_total` and call price.
    unprice(cart)
    cart.touch()
    return 200, render_cart(cart)


def price_cart(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id)
    require_in_progress(cart)
    price(cart)
    return 200, render_cart(cart)


def blocking_error(cart: Cart) -> SandboxError | None:
    """Violet refuses to submit while add-item errors are unresolved (S10)."""
    for error in cart.errors:
        if error["type"] in {"EXTERNAL_ADD_ITEM", "INTERNAL_ADD_ITEM"}:
            return bad_request(
                "cart_has_errors",
                f"cart {cart.id} has unresolved errors: {error['message']} "
                f"(bag {error['bag_id']}); remove the SKU or start a new cart",
            )
    return None
