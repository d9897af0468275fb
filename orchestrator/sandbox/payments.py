"""Payment methods: raw test cards, Stripe test tokens and payment intents (README §2.5).

Card numbers and CVCs are checked and dropped here; only brand and last four are kept, and no
error message ever repeats them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestrator.sandbox.carts import (
    Call,
    Result,
    load_cart,
    require_in_progress,
    set_app_order_id,
)
from orchestrator.sandbox.catalog import (
    TEST_CARDS,
    TEST_TOKENS,
    CardOutcome,
    TestCard,
    card_brand,
    luhn_valid,
)
from orchestrator.sandbox.declines import forget_declines, refuse_declined
from orchestrator.sandbox.errors import bad_request
from orchestrator.sandbox.intents import new_intent
from orchestrator.sandbox.model import Cart, Payment, render_cart
from orchestrator.sandbox.orders import submit_cart
from orchestrator.sandbox.state import SandboxState
from orchestrator.sandbox.validation import as_int, opt_bool, opt_str, require_object

SHOPPER_CARD = TestCard("visa", "4242", CardOutcome.SUCCEED)
"""The card the simulated shopper enters in Stripe.js when confirming an intent."""


def _card(state: SandboxState, data: dict[str, Any]) -> Payment:
    raw_number = data.get("card_number")
    if isinstance(raw_number, int) and not isinstance(raw_number, bool):
        raw_number = str(raw_number)
    if not isinstance(raw_number, str):
        raise bad_request("invalid_field", "card_number must be a string of digits")
    number = raw_number.replace(" ", "").replace("-", "")
    if not luhn_valid(number):
        raise bad_request("invalid_card_number", "card_number is not a valid card number")
    for key in ("card_cvc", "card_exp_month", "card_exp_year"):
        if data.get(key) is None:
            raise bad_request("missing_field", f"{key} is required with card_number")
    month = as_int(data["card_exp_month"], "card_exp_month")
    year = as_int(data["card_exp_year"], "card_exp_year")
    if not 1 <= month <= 12:
        raise bad_request("invalid_field", "card_exp_month must be between 1 and 12")
    if year < 100:
        year += 2000
    cvc = str(data["card_cvc"])
    if not cvc.isdigit() or len(cvc) not in (3, 4):
        raise bad_request("invalid_field", "card_cvc must be 3 or 4 digits")
    opt_str(data, "card_postal_code")
    now = datetime.now(UTC)
    if (year, month) < (now.year, now.month):
        raise bad_request("expired_card", "card_exp_month/card_exp_year: the card has expired")
    known = TEST_CARDS.get(number)
    card = known or TestCard(card_brand(number), number[-4:], CardOutcome.SUCCEED)
    if card.outcome is CardOutcome.EXPIRED:
        raise bad_request("expired_card", "the card has expired")
    if card.outcome is CardOutcome.BAD_CVC:
        raise bad_request("incorrect_cvc", "card_cvc is incorrect")
    return Payment(
        kind="card",
        payment_method_id=state.payment_method_ids(),
        brand=card.brand,
        last_four=card.last_four,
        exp_month=month,
        exp_year=year,
        outcome=card.outcome,
    )


def _token(state: SandboxState, data: dict[str, Any]) -> Payment:
    token = opt_str(data, "token") or ""
    provider = opt_str(data, "payment_provider")
    if not provider:
        raise bad_request("missing_field", "payment_provider is required when token is given")
    card = TEST_TOKENS.get(token)
    if card is None:
        raise bad_request("invalid_payment_token", "token is not a known Stripe test token")
    return Payment(
        kind="token",
        payment_method_id=state.payment_method_ids(),
        brand=card.brand,
        last_four=card.last_four,
        exp_month=12,
        exp_year=datetime.now(UTC).year + 8,
        outcome=card.outcome,
        provider=provider.upper(),
    )


def apply_payment(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id)
    require_in_progress(cart)
    if cart.customer is None:
        raise bad_request(
            "customer_required",
            f"customer is required before payment: POST /checkout/cart/{cart.id}/customer",
        )
    data = require_object(call.body)
    complete = opt_bool(data, "complete_checkout") or False
    if opt_bool(data, "intent_based_capture"):
        if complete:
            raise bad_request(
                "invalid_field", "complete_checkout cannot be combined with intent_based_capture"
            )
        if cart.intent is None or cart.intent.three_ds:
            cart.intent = new_intent(state, cart)
        cart.payment = Payment(kind="intent", payment_method_id=state.payment_method_ids())
    elif data.get("token") is not None:
        cart.payment = _token(state, data)
        cart.intent = None
    elif data.get("card_number") is not None:
        cart.payment = _card(state, data)
        cart.intent = None
    else:
        raise bad_request(
            "missing_field",
            "one of intent_based_capture, token (with payment_provider) or card_number is required",
        )
    forget_declines(cart)
    declined = refuse_declined(state, cart, "payment")
    if declined is not None:
        return declined
    cart.action_confirmed = False
    app_order_id = opt_str(data, "app_order_id")
    if app_order_id:
        set_app_order_id(state, cart, app_order_id)
    cart.touch()
    if complete:
        return submit_cart(state, cart)
    return 200, render_cart(cart)


def update_payment(state: SandboxState, call: Call) -> Result:
    cart = load_cart(state, call.path_id)
    require_in_progress(cart)
    if not cart.intent_based or cart.intent is None:
        raise bad_request(
            "not_intent_based",
            "payment/update applies only to intent-based carts "
            '(apply {"intent_based_capture": true} first)',
        )
    cart.intent.amount = cart.total if cart.shows_totals else cart.sub_total
    cart.touch()
    return 200, render_cart(cart)


def confirm_payment(state: SandboxState, cart: Cart) -> None:
    """The shopper confirmed the intent or passed 3-D Secure (stands in for Stripe.js)."""
    if cart.intent is None and (
        cart.payment is None or cart.payment.outcome is not CardOutcome.THREE_D_SECURE
    ):
        raise bad_request(
            "nothing_to_confirm",
            f"cart {cart.id} has no payment intent and no 3-D Secure card to confirm",
        )
    cart.action_confirmed = True
    if cart.intent is not None:
        cart.intent.confirmed = True
        cart.intent.capture_status = "REQUIRES_CAPTURE"
        if cart.intent_based:
            card = SHOPPER_CARD
            payment = cart.payment or Payment("intent", state.payment_method_ids())
            payment.brand, payment.last_four = card.brand, card.last_four
            payment.exp_month, payment.exp_year = 12, datetime.now(UTC).year + 8
            cart.payment = payment
    cart.touch()
