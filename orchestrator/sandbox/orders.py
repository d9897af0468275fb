"""Turning carts into orders: submit (once only), read, search by app_order_id.

Submit is the call the orchestrator must never repeat blindly; the sandbox makes a repeat
harmless but visible: it answers with the existing order and counts a duplicate submit.

With ``processing_ms`` the submit answers while the order is still PROCESSING (bags SUBMITTED,
payment AUTHORIZED), as Violet does while the merchant platforms have not answered yet; the
bags are accepted or rejected on the first call after that delay (``settle_due``).
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator.sandbox import bags
from orchestrator.sandbox.carts import (
    Call,
    Result,
    blocking_error,
    load_cart,
    price,
    set_app_order_id,
)
from orchestrator.sandbox.catalog import CardOutcome
from orchestrator.sandbox.declines import refuse_declined
from orchestrator.sandbox.errors import bad_request
from orchestrator.sandbox.intents import new_intent
from orchestrator.sandbox.model import (
    CANCELED,
    COMPLETED,
    IN_PROGRESS,
    PROCESSING,
    REQUIRES_ACTION,
    Cart,
    render_cart,
    timestamp,
)
from orchestrator.sandbox.state import SandboxState
from orchestrator.sandbox.validation import (
    opt_int,
    opt_str,
    optional_object,
    query_bool,
    query_int,
)


def submit(state: SandboxState, call: Call) -> Result:
    if not isinstance(call.body, dict):
        raise bad_request(
            "invalid_request_body",
            "submit needs a JSON object as request body (send {} when there is nothing to add)",
        )
    cart = load_cart(state, call.path_id)
    app_order_id = opt_str(call.body, "app_order_id")
    if app_order_id:
        set_app_order_id(state, cart, app_order_id)
    return submit_cart(state, cart)


def _validate(cart: Cart) -> None:
    if not cart.bags:
        raise bad_request("cart_empty", f"cart {cart.id} has no SKUs")
    if cart.customer is None:
        raise bad_request(
            "customer_required",
            f"customer is required before submit: POST /checkout/cart/{cart.id}/customer",
        )
    for bag in cart.bags:
        if bag.needs_shipping and cart.shipping_address is None:
            raise bad_request("shipping_address_required", "shipping_address is required")
        if bag.needs_shipping and bag.shipping_method is None:
            raise bad_request(
                "shipping_method_required",
                f"bag {bag.id} ({bag.merchant.name}) has no shipping method: "
                f"POST /checkout/cart/{cart.id}/shipping",
            )
    error = blocking_error(cart)
    if error is not None:
        raise error
    if cart.payment is None and not cart.intent_based:
        raise bad_request(
            "payment_method_required",
            f"a payment method is required before submit: POST /checkout/cart/{cart.id}/payment",
        )
    if cart.intent_based and cart.intent is not None and not cart.intent.confirmed:
        raise bad_request(
            "payment_intent_not_confirmed",
            "the payment intent has not been confirmed by the shopper (Stripe.js confirmPayment)",
        )


def submit_cart(state: SandboxState, cart: Cart) -> Result:
    """Validate, charge, and send bags to their merchants; at most one order per cart."""
    if cart.status in (COMPLETED, CANCELED, PROCESSING):
        state.duplicate_submits[cart.id] += 1
        return 200, render_cart(cart)
    if cart.status == IN_PROGRESS:
        _validate(cart)
        if not cart.priced:
            price(cart)  # "submit prices the cart if it was never priced" (S5)
        declined = refuse_declined(state, cart, "submit")
        if declined is not None:
            return declined
        outcome = cart.payment.outcome if cart.payment is not None else CardOutcome.SUCCEED
        if outcome is CardOutcome.THREE_D_SECURE and not cart.action_confirmed:
            if cart.intent is None:
                cart.intent = new_intent(state, cart, three_ds=True)
            cart.status = REQUIRES_ACTION
            cart.touch()
            return 200, render_cart(cart)
    elif cart.status == REQUIRES_ACTION and not cart.action_confirmed:
        return 200, render_cart(cart)
    return _complete(state, cart)


def _complete(state: SandboxState, cart: Cart) -> Result:
    if state.config.processing_ms > 0:
        return _begin_processing(state, cart)
    if not _settle(state, cart, announce_rejections=False):
        bag = cart.bags[0]
        raise bad_request(
            "external_submit_failed",
            f"{bag.merchant.name} ({bag.merchant.platform}) rejected the order for bag {bag.id}",
        )
    state.submits[cart.id] += 1
    return 200, render_cart(cart)


def _begin_processing(state: SandboxState, cart: Cart) -> Result:
    """Take the order and answer at once; its merchants decide after ``processing_ms``."""
    cart.status = PROCESSING
    cart.date_submitted = timestamp()  # "after validation, before the bags go out" (S11)
    for bag in cart.bags:
        bag.status = "SUBMITTED"
        bag.financial_status = "AUTHORIZED"
    cart.touch()
    state.processing[cart.id] = time.monotonic() + state.config.processing_ms / 1000
    state.submits[cart.id] += 1
    return 200, render_cart(cart)


def settle_due(state: SandboxState) -> None:
    """Let the merchants answer for every order whose processing delay has passed."""
    now = time.monotonic()
    for cart_id, due in list(state.processing.items()):
        if due > now:
            continue
        del state.processing[cart_id]
        cart = state.carts.get(cart_id)
        if cart is not None and cart.status == PROCESSING:
            _settle(state, cart)


def _settle(state: SandboxState, cart: Cart, *, announce_rejections: bool = True) -> bool:
    """Each waiting bag's merchant accepts or rejects it (bags already moved on the control
    surface keep their status); the order completes (and the payment is captured) if any bag
    was accepted. False when every bag was rejected."""
    waiting = [b for b in cart.bags if b.status in (IN_PROGRESS, bags.SUBMITTED)]
    for bag in waiting:
        if bag.merchant.rejects_submit:
            bags.reject(state, cart, bag)
        else:
            bags.accept(state, cart, bag)
    bags.derive_order_status(state, cart)
    cart.touch()
    settled = any(b.status != bags.REJECTED for b in cart.bags)
    if settled or announce_rejections:
        for bag in waiting:
            bags.announce(state, cart, bag, "reject" if bag.status == bags.REJECTED else "accept")
    return settled


def get_order(state: SandboxState, call: Call) -> Result:
    return 200, render_cart(load_cart(state, call.path_id, "order_not_found"))


def _matches(cart: Cart, filters: dict[str, Any]) -> bool:
    order_id = filters.get("order_id")
    if order_id is not None and cart.id != order_id:
        return False
    status = filters.get("status")
    if status is not None and cart.status != status:
        return False
    referral_id = filters.get("referral_id")
    if referral_id is not None and cart.referral_id != referral_id:
        return False
    merchant_id = filters.get("merchant_id")
    if merchant_id is not None and all(b.merchant.id != merchant_id for b in cart.bags):
        return False
    bag_status = filters.get("bag_status")
    return bag_status is None or any(b.status == bag_status for b in cart.bags)


def search_orders(state: SandboxState, call: Call) -> Result:
    body = optional_object(call.body)
    exclude_in_progress = query_bool(call.query, "exclude_in_progress", True)
    page = query_int(call.query, "page", 1, 1)
    size = query_int(call.query, "size", 20, 1)
    filters = {
        "order_id": opt_int(body, "order_id"),
        "status": opt_str(body, "status"),
        "referral_id": opt_str(body, "referral_id"),
        "merchant_id": opt_int(body, "merchant_id"),
        "bag_status": opt_str(body, "bag_status"),
    }
    app_order_id = opt_str(body, "app_order_id")
    if app_order_id is not None:
        candidates = [state.carts[i] for i in state.by_app_order_id.get(app_order_id, ())]
    else:
        candidates = list(state.carts.values())
    found = []
    for cart in candidates:
        if cart.deleted or (exclude_in_progress and cart.status == IN_PROGRESS):
            continue
        if _matches(cart, filters):
            found.append(cart)
    found.sort(key=lambda c: c.id)
    total = len(found)
    pages = (total + size - 1) // size
    content = [load_cart(state, c.id) for c in found[(page - 1) * size : page * size]]
    return 200, {
        "content": [render_cart(c) for c in content],
        "last": page >= pages,
        "first": page == 1,
        "total_pages": pages,
        "total_elements": total,
        "number_of_elements": len(content),
        "size": size,
        "number": page - 1,
        "empty": not content,
    }
