"""Stripe PaymentIntents as Violet exposes them: an id and a client secret for the front end."""

from __future__ import annotations

import secrets

from orchestrator.sandbox.model import Cart, Intent
from orchestrator.sandbox.state import SandboxState


def new_intent(state: SandboxState, cart: Cart, *, three_ds: bool = False) -> Intent:
    """A fresh intent; its secret has Stripe's shape ``pi_<id>_secret_<random>``."""
    intent_id = "pi_3" + secrets.token_hex(12)[:23]
    return Intent(
        id=intent_id,
        client_secret=f"{intent_id}_secret_{secrets.token_hex(13)[:25]}",
        transaction_id=state.transaction_ids(),
        amount=cart.total if cart.shows_totals else cart.sub_total,
        capture_status="REQUIRES_ACTION" if three_ds else "REQUIRES_PAYMENT_METHOD",
        three_ds=three_ds,
    )
