"""Violet's merchant-facing after-submit endpoints: cancel an order or a bag, refund a bag, read
a bag and its refunds (README §2.1 #22-#24).

Cancel and refund answer 202 whatever happened (the newest reference says so for cancel): a
failure Violet can see at once is in the body (CANCELLATION_FAILURE, a FAILED refund), and the
``silent_failure`` fault makes the 202 look like success while nothing moves; only a later read
or the ORDER_UPDATED webhook it sends shows that. Every call is counted per order or bag, like
submits, so a test can prove one was never sent twice.
"""

from __future__ import annotations

from typing import Any

from orchestrator.sandbox import bags
from orchestrator.sandbox.carts import Call, Result, load_cart
from orchestrator.sandbox.errors import bad_request
from orchestrator.sandbox.model import (
    CANCELED,
    IN_PROGRESS,
    REQUIRES_ACTION,
    Bag,
    Cart,
    render_bag,
)
from orchestrator.sandbox.state import SandboxState
from orchestrator.sandbox.validation import as_int, opt_str, optional_object

REASON_CODES = ("OTHER", "CUSTOMER", "INVENTORY", "FRAUD", "DECLINED")
MAX_REASON = 255


def _cancel_body(call: Call) -> None:
    body = optional_object(call.body)
    reason = opt_str(body, "reason")
    if reason is not None and len(reason) > MAX_REASON:
        raise bad_request("invalid_field", f"reason must be at most {MAX_REASON} characters")
    code = body.get("reason_code")
    if code is not None and code not in REASON_CODES:
        raise bad_request("invalid_field", f"reason_code must be one of {', '.join(REASON_CODES)}")


def _submitted(cart: Cart) -> bool:
    return cart.status not in (IN_PROGRESS, REQUIRES_ACTION)


def _pretend(state: SandboxState, cart: Cart, bag: Bag) -> dict[str, Any]:
    """What a cancelled_bags[] entry would say, for a cancellation that silently fails."""
    bags.announce(state, cart, bag, "unchanged")
    amount = bag.total - bag.refunded if bag.financial_status == "PAID" else 0
    return {
        "bag_id": bag.id,
        "order_id": cart.id,
        "merchant_id": bag.merchant.id,
        "status": CANCELED,
        "refund": {"amount": amount, "currency": cart.currency, "status": "COMPLETED"},
    }


def _cancel_bags(state: SandboxState, call: Call, cart: Cart, targets: list[Bag]) -> dict[str, Any]:
    result: dict[str, Any] = {"order_id": cart.id, "app_id": cart.app_id, "cancelled_bags": []}
    if not _submitted(cart):
        result.update(
            status="CANCELLATION_FAILURE",
            message=f"order {cart.id} is {cart.status}; only submitted orders can be canceled "
            "(delete the cart instead)",
        )
        return result
    live = [b for b in targets if b.status != bags.REJECTED]
    if live and all(b.status == CANCELED for b in live):
        result.update(status=CANCELED, message=f"order {cart.id}: already canceled")
        return result
    able = [b for b in targets if bags.refusal(cart, b, "cancel") is None]
    refused = [b for b in live if b not in able and b.status != CANCELED]
    for bag in able:
        if call.silent_failure:
            entry = _pretend(state, cart, bag)
        else:
            entry = bags.cancel(state, cart, bag)
            bags.derive_order_status(state, cart)
            cart.touch()
            bags.announce(state, cart, bag, "cancel")
        result["cancelled_bags"].append(entry)
    if not able:
        reasons = "; ".join(filter(None, (bags.refusal(cart, b, "cancel") for b in targets)))
        result.update(status="CANCELLATION_FAILURE", message=reasons or "nothing to cancel")
    elif refused:
        ids = ", ".join(str(b.id) for b in refused)
        result.update(status="PARTIALLY_CANCELED", message=f"bags {ids} could not be canceled")
    else:
        result.update(status=CANCELED, message=f"order {cart.id} canceled")
    return result


def cancel_order(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id, "order_not_found")
    _cancel_body(call)
    state.order_cancels[cart.id] += 1
    return 202, _cancel_bags(state, call, cart, list(cart.bags))


def cancel_bag(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id, "order_not_found")
    bag = bags.find_bag(cart, call.bag_id)
    _cancel_body(call)
    state.bag_cancels[bag.id] += 1
    return 202, _cancel_bags(state, call, cart, [bag])


def _refund_amount(body: dict[str, Any], bag: Bag) -> int | None:
    """The asked amount: ``amount`` in minor units, or ``skus`` [{sku_id, quantity}] priced
    at what the shopper paid; None means everything not yet refunded."""
    if "amount" in body and "skus" in body:
        raise bad_request("invalid_request_body", "send amount or skus, not both")
    if "amount" in body:
        amount = as_int(body["amount"], "amount")
        if amount <= 0:
            raise bad_request("invalid_field", "amount must be > 0")
        return amount
    skus = body.get("skus")
    if skus is None:
        return None
    if not isinstance(skus, list) or not skus:
        raise bad_request("invalid_field", "skus must be a non-empty list")
    total = 0
    for entry in skus:
        if not isinstance(entry, dict):
            raise bad_request("invalid_field", "skus[] entries must be objects")
        sku_id = as_int(entry.get("sku_id"), "skus[].sku_id")
        quantity = as_int(entry.get("quantity", 1), "skus[].quantity")
        item = next((s for s in bag.skus if s.sku.id == sku_id), None)
        if item is None or not 0 < quantity <= item.quantity:
            raise bad_request("invalid_field", f"bag {bag.id} has no {quantity} x sku {sku_id}")
        total += item.price * quantity
    return total


def refund_bag(state: SandboxState, call: Call) -> Result:
    """Refund a bag, all of it or part; answered 202 with the Refund (PROCESSING when taken)."""
    cart = load_cart(state, call.path_id, "order_not_found")
    bag = bags.find_bag(cart, call.bag_id)
    body = optional_object(call.body)
    asked = _refund_amount(body, bag)
    reason = opt_str(body, "reason")
    state.bag_refunds[bag.id] += 1
    left = bag.total - bag.refunded
    amount = left if asked is None else asked
    why = bags.refusal(cart, bag, "refund")
    if why is None and amount > left:
        why = f"bag {bag.id} has only {left} left to refund"
    if why is not None:
        record = bags.refund_record(state, cart, bag, amount, reason, "FAILED")
        return 202, {**record, "message": why}
    if call.silent_failure:
        record = bags.refund_record(state, cart, bag, amount, reason, "FAILED")
        bags.announce(state, cart, bag, "unchanged")
    else:
        record = bags.refund(state, cart, bag, amount, reason)
        bags.derive_order_status(state, cart)
        cart.touch()
        bags.announce(state, cart, bag, "refund")
    return 202, {**record, "status": "PROCESSING"}


def get_bag(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id, "order_not_found")
    return 200, render_bag(cart, bags.find_bag(cart, call.bag_id))


def get_refunds(state: SandboxState, call: Call) -> Result:
    """GET /orders/{id}/refunds, or one bag's with a bag id in the path."""
    cart = load_cart(state, call.path_id, "order_not_found")
    chosen = [bags.find_bag(cart, call.bag_id)] if call.bag_id is not None else cart.bags
    return 200, [dict(r) for bag in chosen for r in bag.refunds]
