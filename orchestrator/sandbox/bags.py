"""A bag's life after submit: its legal moves, the order status they imply, the events they send.

Violet's bag statuses (README §3.5) are IN_PROGRESS, SUBMITTED, ACCEPTED, COMPLETED,
PARTIALLY_REFUNDED, REFUNDED, REJECTED, CANCELED, BACKORDERED; shipping and delivery show in
``fulfillment_status`` (the bag stays ACCEPTED until the merchant completes it). Every move
sends the webhook event Violet names for it, with the whole order as it is after the move.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from orchestrator.sandbox.carts import add_error
from orchestrator.sandbox.errors import SandboxError
from orchestrator.sandbox.model import (
    CANCELED,
    COMPLETED,
    IN_PROGRESS,
    PROCESSING,
    Bag,
    Cart,
    timestamp,
)
from orchestrator.sandbox.state import SandboxState

SUBMITTED = "SUBMITTED"
ACCEPTED = "ACCEPTED"
REJECTED = "REJECTED"
REFUNDED = "REFUNDED"
PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
BACKORDERED = "BACKORDERED"
SHIPPED = "SHIPPED"
DELIVERED = "DELIVERED"

#: Which bag statuses each control-surface action starts from (the one declaration of them).
MOVES: dict[str, frozenset[str]] = {
    "accept": frozenset({SUBMITTED, BACKORDERED}),
    "reject": frozenset({SUBMITTED, BACKORDERED}),
    "ship": frozenset({ACCEPTED}),
    "deliver": frozenset({ACCEPTED, COMPLETED}),
    "complete": frozenset({ACCEPTED}),
    "cancel": frozenset({SUBMITTED, ACCEPTED, BACKORDERED}),
    "refund": frozenset({ACCEPTED, COMPLETED, PARTIALLY_REFUNDED}),
}
ACTIONS = tuple(MOVES)


def find_bag(cart: Cart, bag_id: int | None) -> Bag:
    for bag in cart.bags:
        if bag.id == bag_id:
            return bag
    raise SandboxError(404, "bag_not_found", f"bag {bag_id} not found in order {cart.id}")


def refusal(cart: Cart, bag: Bag, action: str) -> str | None:
    """Why `action` cannot happen to `bag` now, or None when it can."""
    if bag.status not in MOVES[action]:
        return f"bag {bag.id} is {bag.status}; cannot {action} it"
    if action in ("ship", "cancel") and bag.fulfillment_status != "PROCESSING":
        return f"bag {bag.id} is already {bag.fulfillment_status}; cannot {action} it"
    if action == "deliver" and bag.fulfillment_status != SHIPPED:
        return f"bag {bag.id} has not shipped; cannot deliver it"
    if action == "refund" and bag.total - bag.refunded <= 0:
        return f"bag {bag.id} has nothing left to refund"
    return None


def _gateway_id(cart: Cart) -> str:
    if cart.intent is not None:
        return cart.intent.id
    for bag in cart.bags:
        for transaction in bag.transactions:
            return str(transaction["gateway_transaction_id"])
    return "pi_3" + secrets.token_hex(12)[:23]


def _transaction(state: SandboxState, cart: Cart, bag: Bag, kind: str, amount: int) -> None:
    now = timestamp()
    bag.transactions.append(
        {
            "id": state.transaction_ids(),
            "app_id": cart.app_id,
            "merchant_id": bag.merchant.id,
            "order_id": cart.id,
            "bag_id": bag.id,
            "type": kind,
            "status": "COMPLETED",
            "amount": amount,
            "currency": cart.currency,
            "gateway": "stripe",
            "gateway_transaction_id": _gateway_id(cart),
            "date_created": now,
            "date_last_modified": now,
        }
    )


def accept(state: SandboxState, cart: Cart, bag: Bag) -> None:
    """The merchant takes the bag: paid, stock taken, an external order id."""
    bag.status = ACCEPTED
    bag.financial_status = "PAID"
    bag.external_id = str(state.external_ids())
    for item in bag.skus:
        item.status = PROCESSING
        stock = state.stock.get(item.sku.id)
        if stock is not None:
            state.stock[item.sku.id] = max(0, stock - item.quantity)
    _transaction(state, cart, bag, "CAPTURE", bag.total)
    if cart.intent is not None:
        cart.intent.capture_status = "CAPTURED"


def reject(state: SandboxState, cart: Cart, bag: Bag) -> None:
    if bag.status == REJECTED:
        return
    bag.status = REJECTED
    bag.financial_status = "VOIDED"
    cart.errors.append(
        add_error(
            state,
            cart,
            bag,
            "EXTERNAL_SUBMIT_CART",
            f"{bag.merchant.name}: the merchant platform rejected the order",
        )
    )


def cancel(state: SandboxState, cart: Cart, bag: Bag) -> dict[str, Any]:
    """Cancel and refund what was paid; the cancellation's cancelled_bags[] entry."""
    paid = bag.financial_status == "PAID"
    amount = bag.total - bag.refunded if paid else 0
    bag.status = CANCELED
    bag.financial_status = REFUNDED if paid else "VOIDED"
    for item in bag.skus:
        item.status = CANCELED
    if amount > 0:
        _transaction(state, cart, bag, "REFUND", amount)
    return {
        "bag_id": bag.id,
        "order_id": cart.id,
        "merchant_id": bag.merchant.id,
        "status": CANCELED,
        "refund": {"amount": amount, "currency": cart.currency, "status": "COMPLETED"},
    }


def refund_record(
    state: SandboxState, cart: Cart, bag: Bag, amount: int, reason: str | None, status: str
) -> dict[str, Any]:
    record = {
        "id": state.refund_ids(),
        "order_id": cart.id,
        "bag_id": bag.id,
        "merchant_id": bag.merchant.id,
        "amount": amount,
        "currency": cart.currency,
        "status": status,
        "refund_reason": reason,
        "date_created": timestamp(),
    }
    bag.refunds.append(record)
    return record


def refund(
    state: SandboxState, cart: Cart, bag: Bag, amount: int, reason: str | None = None
) -> dict[str, Any]:
    """Refund `amount` (checked by the caller); all of it makes the bag REFUNDED."""
    record = refund_record(state, cart, bag, amount, reason, "COMPLETED")
    _transaction(state, cart, bag, "REFUND", amount)
    full = bag.refunded >= bag.total
    bag.status = bag.financial_status = REFUNDED if full else PARTIALLY_REFUNDED
    if full:
        for item in bag.skus:
            item.status = REFUNDED
    return record


def _ship(bag: Bag, fulfillment: str) -> None:
    bag.fulfillment_status = fulfillment
    for item in bag.skus:
        item.status = fulfillment


def derive_order_status(state: SandboxState, cart: Cart) -> None:
    """The order's status from its bags once none is waiting for its merchant."""
    statuses = {b.status for b in cart.bags}
    if statuses & {SUBMITTED, BACKORDERED, IN_PROGRESS}:
        return
    state.processing.pop(cart.id, None)
    if statuses <= {REJECTED}:
        if cart.status == PROCESSING:  # every bag rejected: as a refused single-bag submit
            cart.status = IN_PROGRESS
    elif statuses <= {CANCELED, REJECTED}:
        cart.status = CANCELED
    elif statuses <= {REFUNDED, CANCELED, REJECTED}:
        cart.status = REFUNDED
    elif statuses & {REFUNDED, PARTIALLY_REFUNDED}:
        cart.status = PARTIALLY_REFUNDED
    else:
        cart.status = COMPLETED
        cart.date_submitted = cart.date_submitted or timestamp()
    cart.touch()


def announce(state: SandboxState, cart: Cart, bag: Bag, action: str) -> None:
    """The webhook events Violet sends for a bag that just moved."""
    events = {
        "accept": ("ORDER_ACCEPTED", "ORDER_UPDATED"),  # "arrive together for each bag"
        "reject": ("ORDER_UPDATED",),
        "ship": ("ORDER_SHIPPED",),
        "deliver": ("ORDER_DELIVERED",),
        "complete": ("ORDER_COMPLETED",),
        "cancel": (state.config.canceled_event,),
        "refund": ("ORDER_REFUNDED",),
        "unchanged": ("ORDER_UPDATED",),
    }[action]
    for event_type in events:
        state.emit(event_type, cart, bag)


def move(
    state: SandboxState, cart: Cart, bag: Bag, action: str, amount: int | None = None
) -> dict[str, Any] | None:
    """The merchant (or Violet) moves a bag: control-surface actions. 409 when illegal."""
    if action not in MOVES:
        raise SandboxError(400, "invalid_action", f"action must be one of {', '.join(ACTIONS)}")
    why = refusal(cart, bag, action)
    if why is not None:
        raise SandboxError(409, "illegal_move", why)
    result: dict[str, Any] | None = None
    if action == "refund":
        left = bag.total - bag.refunded
        amount = left if amount is None else amount
        if not 0 < amount <= left:
            raise SandboxError(400, "invalid_amount", f"amount must be in 1..{left}")
        result = refund(state, cart, bag, amount, "merchant refund")
    else:
        steps: dict[str, Callable[[], Any]] = {
            "accept": lambda: accept(state, cart, bag),
            "reject": lambda: reject(state, cart, bag),
            "ship": lambda: _ship(bag, SHIPPED),
            "deliver": lambda: _ship(bag, DELIVERED),
            "complete": lambda: _complete(bag),
            "cancel": lambda: cancel(state, cart, bag),
        }
        result = steps[action]()
    derive_order_status(state, cart)
    cart.touch()
    announce(state, cart, bag, action)
    return result


def _complete(bag: Bag) -> None:
    bag.status = COMPLETED
    if bag.fulfillment_status == "PROCESSING":
        _ship(bag, SHIPPED)
