"""How the sandbox refuses a declined card, in each of the shapes a Violet answer may carry it.

Violet relays the payment provider's refusal; where the decline sits in the answer varies: as
the error body's own type (``{"error": "card_declined"}``), as the ``decline_code`` of an
``errors[]`` entry of a 400 whose type names the step (``EXTERNAL_SUBMIT_CART``), or inside the
``errors[]`` of an HTTP 200 Order. ``decline_shape`` picks one, and ``decline_step`` whether a
declining card is refused when it is applied (payment) or when the order is submitted.
"""

from __future__ import annotations

from typing import Final

from orchestrator.sandbox.carts import Result
from orchestrator.sandbox.catalog import CardOutcome
from orchestrator.sandbox.errors import SandboxError, bad_request
from orchestrator.sandbox.model import Cart, render_cart, timestamp
from orchestrator.sandbox.state import SandboxState

DECLINES: Final = {
    CardOutcome.DECLINE: ("card_declined", "Your card was declined."),
    CardOutcome.INSUFFICIENT_FUNDS: ("insufficient_funds", "Your card has insufficient funds."),
}
#: The decline as the error body's type (the default), inside a 400's errors[], or inside the
#: errors[] of a 200 Order.
SHAPES: Final = ("error", "errors_entry", "cart_errors")
#: Where a declining card is refused: at submit (the default), or already when it is applied.
STEPS: Final = ("submit", "payment")
_ERROR_TYPES: Final = {"submit": "EXTERNAL_SUBMIT_CART", "payment": "EXTERNAL_SET_PAYMENT_METHOD"}


def refuse_declined(state: SandboxState, cart: Cart, step: str) -> Result | None:
    """Violet's answer when the cart's card is declined at `step`, or None if it is not refused
    there. A card refused when applied is not kept on the cart. Raises for the 400 shapes."""
    payment = cart.payment
    if payment is None or payment.outcome not in DECLINES:
        return None
    if step == "payment" and state.config.decline_step != "payment":
        return None
    code, message = DECLINES[payment.outcome]
    if step == "payment":
        cart.payment = None
    shape = state.config.decline_shape
    if shape == "error":
        raise bad_request(code, message)
    entry = {
        "id": state.error_ids(),
        "order_id": cart.id,
        "entity_id": str(cart.id),
        "entity_type": "ORDER",
        "type": _ERROR_TYPES[step],
        "message": message,
        "decline_code": code,
        "date_created": timestamp(),
        "platform": "STRIPE",
    }
    if shape == "errors_entry":
        raise SandboxError(400, _ERROR_TYPES[step], message, extra={"errors": [entry]})
    cart.errors.append(entry)
    cart.touch()
    return 200, render_cart(cart)


def forget_declines(cart: Cart) -> None:
    """A new payment method replaces the declined one: its errors[] entries go with it."""
    cart.errors = [error for error in cart.errors if "decline_code" not in error]
