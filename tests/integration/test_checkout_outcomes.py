"""Failures and waiting states: declined cards, unknown SKUs, partial acceptance, 3-D Secure,
payment intents. Each ends in the right state with Violet's words kept in the audit trail."""

from __future__ import annotations

import pytest

from orchestrator import IllegalTransition
from orchestrator.api import Orchestrator
from orchestrator.errors import PaymentNotConfirmed
from orchestrator.sandbox import SandboxControl
from tests.fixtures.orchestrator import (
    DECLINED,
    INTENT,
    ONE_REJECTED,
    THREE_DS,
    TOKEN,
    checkout_request,
)


async def test_declined_card_fails_with_violets_error_in_the_history(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    checkout = await orch.start(checkout_request(payment=DECLINED))
    assert checkout.state == "failed"
    assert checkout.last_error is not None
    assert checkout.last_error["class"] == "permanent"
    assert checkout.last_error["type"] == "card_declined"
    assert checkout.pending_step is None
    errors = [e for e in await orch.history(checkout.id) if e.kind == "error"]
    assert errors and errors[-1].error_type == "card_declined"
    assert (await sandbox_control.stats())["submits"] == {}


async def test_unknown_sku_fails_without_a_cart(orch: Orchestrator) -> None:
    checkout = await orch.start(checkout_request(skus=[{"sku_id": 999999, "quantity": 1}]))
    assert checkout.state == "failed"
    assert checkout.last_error is not None
    assert checkout.last_error["status"] == 404
    assert checkout.violet_order_id is None


async def test_out_of_stock_sku_fails_and_releases_the_cart(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    checkout = await orch.start(checkout_request(skus=[{"sku_id": 196999, "quantity": 1}]))
    assert checkout.state == "failed"
    assert checkout.last_error is not None and checkout.last_error["step"] == "create_cart"
    stats = await sandbox_control.stats()
    assert checkout.violet_order_id in stats["deleted_carts"]


async def test_async_cart_error_stops_the_checkout_before_payment(orch: Orchestrator) -> None:
    checkout = await orch.start(checkout_request(skus=[{"sku_id": 196888, "quantity": 1}]))
    assert checkout.state == "failed"
    assert checkout.last_error is not None
    assert checkout.last_error["type"] == "EXTERNAL_ADD_ITEM"


async def test_partial_acceptance_is_recorded_per_bag(orch: Orchestrator) -> None:
    checkout = await orch.start(checkout_request(skus=ONE_REJECTED, payment=TOKEN))
    assert checkout.state == "submitted"
    assert checkout.partially_accepted
    assert sorted(b["status"] for b in checkout.bags) == ["ACCEPTED", "REJECTED"]
    transition = next(e for e in await orch.history(checkout.id) if e.to_state == "submitted")
    assert transition.detail is not None and transition.detail["partial"] is True


async def test_three_d_secure_waits_then_confirm_submits_once(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    checkout = await orch.start(checkout_request(payment=THREE_DS))
    assert checkout.state == "requires_action"
    assert checkout.waiting_reason and "3-D Secure" in checkout.waiting_reason
    assert checkout.handout.get("payment_intent_client_secret", "").startswith("pi_")
    assert checkout.violet_order_id is not None
    await sandbox_control.confirm_payment(checkout.violet_order_id)
    done = await orch.confirm_payment(checkout.id)
    assert done.state == "submitted", done.last_error
    stats = await sandbox_control.stats()
    assert stats["submits"] == {str(checkout.violet_order_id): 1}
    assert stats["duplicate_submits"] == {}


async def test_confirm_before_the_shopper_did_parks_again(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    checkout = await orch.start(checkout_request(payment=THREE_DS))
    again = await orch.confirm_payment(checkout.id)
    assert again.state == "requires_action"
    assert (await sandbox_control.stats())["submits"] == {}


async def test_confirming_an_intent_the_shopper_did_not_confirm_changes_nothing(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    checkout = await orch.start(checkout_request(payment=INTENT))
    with pytest.raises(PaymentNotConfirmed, match="REQUIRES_PAYMENT_METHOD"):
        await orch.confirm_payment(checkout.id)
    assert (await orch.get(checkout.id)).state == "awaiting_confirmation"
    assert (await sandbox_control.stats())["calls_by_op"].get("submit", 0) == 0


async def test_intent_payment_waits_for_confirmation_then_prices_and_submits(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    checkout = await orch.start(checkout_request(payment=INTENT))
    assert checkout.state == "awaiting_confirmation"
    assert "stripe_key" in checkout.handout
    secret = (await orch.payment_secret(checkout.id))["payment_intent_client_secret"]
    assert secret == checkout.handout["payment_intent_client_secret"]
    assert checkout.violet_order_id is not None
    await sandbox_control.confirm_payment(checkout.violet_order_id)
    done = await orch.confirm_payment(checkout.app_order_id)
    assert done.state == "submitted", done.last_error
    states = [e.to_state for e in await orch.history(done.id) if e.kind == "transition"]
    assert states[-3:] == ["paid", "priced", "submitted"]


async def test_confirming_a_submitted_checkout_is_an_illegal_transition(
    orch: Orchestrator,
) -> None:
    checkout = await orch.start(checkout_request(payment=TOKEN))
    with pytest.raises(IllegalTransition):
        await orch.confirm_payment(checkout.id)


async def test_cancel_releases_the_violet_cart(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    checkout = await orch.start(checkout_request(payment=INTENT))
    canceled = await orch.cancel(checkout.id)
    assert canceled.state == "canceled"
    assert checkout.violet_order_id in (await sandbox_control.stats())["deleted_carts"]
    with pytest.raises(IllegalTransition):
        await orch.cancel(checkout.id)


async def test_card_lost_before_violet_took_it_waits_for_payment_input(
    orch: Orchestrator,
) -> None:
    checkout = await orch.start(checkout_request(), run=False)
    # A different process (no card in memory) drives it: it must stop and ask, not fail.
    orch._cards.clear()
    waiting = await orch.run(checkout.id)
    assert waiting.state == "awaiting_payment"
    assert waiting.waiting_reason and "never stored" in waiting.waiting_reason
    done = await orch.provide_payment(
        checkout.id,
        {
            "type": "card",
            "card_number": "4242424242424242",
            "card_cvc": "123",
            "card_exp_month": 12,
            "card_exp_year": 2030,
            "card_postal_code": "11211",
        },
    )
    assert done.state == "submitted", done.last_error
