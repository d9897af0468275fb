"""The sync facade gives blocking code the same API, over HTTP to a served sandbox."""

from __future__ import annotations

import pytest

from orchestrator import CheckoutNotFound, SyncOrchestrator
from tests.fixtures.orchestrator import (
    DIGITAL,
    INTENT,
    TOKEN,
    VISA,
    checkout_request,
    make_settings,
)
from tests.fixtures.sandbox import HttpSandbox


def test_sync_facade_starts_reads_and_reports_history(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    settings = make_settings(database_url, http_sandbox.base_url)
    with SyncOrchestrator(settings) as orch:
        checkout = orch.start(checkout_request(payment=TOKEN))
        assert checkout.state == "submitted", checkout.last_error
        assert orch.get(checkout.app_order_id).id == checkout.id
        assert orch.history(checkout.id)[-1].to_state == "submitted"
        with pytest.raises(CheckoutNotFound):
            orch.get("missing")


def test_sync_facade_hands_out_an_intent_secret_and_takes_a_card_again(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    settings = make_settings(database_url, http_sandbox.base_url)
    with SyncOrchestrator(settings) as orch, SyncOrchestrator(settings) as other:
        intent = orch.start(checkout_request(skus=DIGITAL, payment=INTENT))
        assert intent.state == "awaiting_confirmation", intent.last_error
        assert orch.payment_secret(intent.id)["payment_intent_client_secret"]
        # A card lives only in the process it was given to: another one parks the checkout.
        registered = orch.start(checkout_request(skus=DIGITAL, payment=VISA), run=False)
        assert other.run(registered.id).state == "awaiting_payment"
        assert other.provide_payment(registered.id, dict(VISA)).state == "submitted"
        assert other.settings.database_url == orch.settings.database_url
