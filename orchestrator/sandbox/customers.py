"""The cart's customer and addresses: parsing them (README §2.3) and the endpoints that set
them. Anything that can change taxes leaves the cart unpriced."""

from __future__ import annotations

from typing import Any

from orchestrator.sandbox.cart_core import (
    Call,
    Result,
    load_cart,
    require_in_progress,
    unprice,
)
from orchestrator.sandbox.errors import bad_request
from orchestrator.sandbox.model import USER_ID, Cart, render_cart
from orchestrator.sandbox.state import SandboxState
from orchestrator.sandbox.validation import opt_bool, opt_str, req_str, require_object

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


def set_customer(
    cart: Cart,
    parsed: tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None],
) -> None:
    """Put a parsed customer on the cart: at its creation or through the customer endpoint."""
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
    set_customer(cart, parse_customer(call.body, "request body"))
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
