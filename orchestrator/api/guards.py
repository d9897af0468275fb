"""The front door's refusals: which commands a checkout's row allows, decided before any write.

Each check raises `IllegalTransition` naming why; the commands run it on the row as read (so a
refusal takes no lease) and again on the row as claimed (it may have moved in between).
"""

from __future__ import annotations

from orchestrator import states
from orchestrator.engine.action_rules import actor_problem
from orchestrator.errors import IllegalTransition, InvalidRequest
from orchestrator.states import SUBMIT
from orchestrator.store.records import CheckoutRow
from orchestrator.violet import Cart

__all__ = [
    "check_actor",
    "check_awaiting_payment",
    "check_cancelable",
    "check_confirmable",
    "nothing_to_drive",
    "unconfirmed_intent_status",
]

#: Stripe PaymentIntent statuses that mean the shopper has not (yet) confirmed the payment.
_UNCONFIRMED = frozenset({"REQUIRES_PAYMENT_METHOD", "REQUIRES_CONFIRMATION", "REQUIRES_ACTION"})


def unconfirmed_intent_status(cart: Cart) -> str | None:
    """The intent's status when the shopper has not confirmed it yet, else None."""
    for transaction in cart.payment_transactions:
        status = str(transaction.get("capture_status") or "").upper()
        if status in _UNCONFIRMED:
            return status
    return None


def check_actor(actor: str | None) -> None:
    """An operator's name, when given, is fit for the audit trail (InvalidRequest otherwise)."""
    if actor is not None and (problem := actor_problem(actor)) is not None:
        raise InvalidRequest([("actor", problem)])


def check_cancelable(row: CheckoutRow) -> None:
    if not states.is_cancelable(row.state):
        raise IllegalTransition(f"cannot cancel a checkout in state {row.state!r}")
    if row.in_flight and row.pending_step == SUBMIT:
        raise IllegalTransition(
            "a submit of this checkout may be running at Violet; let recovery settle it first"
        )


def check_confirmable(row: CheckoutRow) -> None:
    if not states.is_confirmable(row.state):
        raise IllegalTransition(f"cannot confirm payment of a checkout in state {row.state!r}")


def check_awaiting_payment(row: CheckoutRow) -> None:
    if not states.is_awaiting_payment(row.state):
        raise IllegalTransition(f"cannot provide payment in state {row.state!r}")


def nothing_to_drive(row: CheckoutRow) -> bool:
    return row.state in states.TERMINAL_STATES or (row.pending_step is None and not row.in_flight)
