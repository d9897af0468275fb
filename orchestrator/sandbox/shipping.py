"""The cart's shipping methods: what Violet offers per bag, and choosing them."""

from __future__ import annotations

from typing import Any

from orchestrator.sandbox.cart_core import (
    Call,
    Result,
    load_cart,
    require_in_progress,
    unprice,
)
from orchestrator.sandbox.catalog import convert
from orchestrator.sandbox.errors import bad_request
from orchestrator.sandbox.model import Bag, Cart, render_cart
from orchestrator.sandbox.state import SandboxState
from orchestrator.sandbox.validation import req_int, req_str, require_object


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
