"""What every cart endpoint shares: the call as the operations see it, loading a cart, the
in-progress rule, pricing, cart errors and the app_order_id index.

Each operation is a plain synchronous function ``(state, call) -> (status, body)`` so that a
Violet call is applied atomically and the HTTP layer stays a thin wrapper.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.sandbox.catalog import Sku, tax_lines
from orchestrator.sandbox.errors import SandboxError, bad_request, not_found
from orchestrator.sandbox.model import IN_PROGRESS, Bag, Cart, timestamp
from orchestrator.sandbox.state import SandboxState

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


def index_cart(state: SandboxState, cart: Cart) -> None:
    """Findable by app_order_id, as Violet's order search finds it."""
    if cart.app_order_id is not None:
        state.by_app_order_id.setdefault(cart.app_order_id, []).append(cart.id)


def set_app_order_id(state: SandboxState, cart: Cart, app_order_id: str) -> None:
    if cart.app_order_id is None:
        cart.app_order_id = app_order_id
        index_cart(state, cart)
