"""A card lives in the memory of the process it was given to only while its checkout may still
need it (not yet past payment): once another process ends the checkout or moves it past payment,
the card is dropped as soon as this process sees that, and at its next card start at the latest."""

from __future__ import annotations

import httpx

from orchestrator.api import Orchestrator
from orchestrator.config import Settings
from tests.fixtures.orchestrator import DIGITAL, VISA, checkout_request


async def test_a_card_is_dropped_once_this_process_finds_its_checkout_canceled_elsewhere(
    settings: Settings, sandbox_transport: httpx.AsyncBaseTransport
) -> None:
    async with (
        Orchestrator(settings, violet_transport=sandbox_transport) as holder,
        Orchestrator(settings, violet_transport=sandbox_transport) as other,
    ):
        registered = await holder.start(checkout_request(skus=DIGITAL), run=False)
        assert registered.id in holder._cards
        await other.cancel(registered.id)
        assert (await holder.get(registered.id)).state == "canceled"
        assert registered.id not in holder._cards


async def test_a_card_is_dropped_at_the_next_card_start_once_another_process_submitted_it(
    settings: Settings, sandbox_transport: httpx.AsyncBaseTransport
) -> None:
    async with (
        Orchestrator(settings, violet_transport=sandbox_transport) as holder,
        Orchestrator(settings, violet_transport=sandbox_transport) as other,
    ):
        registered = await holder.start(checkout_request(skus=DIGITAL), run=False)
        # `other` never had the card: it parks the checkout, and is given the card again.
        assert (await other.run(registered.id)).state == "awaiting_payment"
        done = await other.provide_payment(registered.id, VISA)
        assert done.state == "submitted"
        assert registered.id in holder._cards  # `holder` has not looked at it since
        second = await holder.start(checkout_request(skus=DIGITAL), run=False)
        assert registered.id not in holder._cards
        assert second.id in holder._cards


async def test_a_card_given_again_whose_payment_outcome_is_unknown_waits_for_it_elsewhere(
    settings: Settings, sandbox_transport: httpx.AsyncBaseTransport
) -> None:
    """The card given again (awaiting_payment) meets a 500 at Violet: the payment may have been
    applied, so its step stays in flight. A process without the card reads the cart, finds no
    payment and waits in awaiting_payment for the card again, without sending anything."""
    from orchestrator.sandbox import SandboxControl

    async with (
        Orchestrator(settings, violet_transport=sandbox_transport) as holder,
        Orchestrator(settings, violet_transport=sandbox_transport) as other,
        Orchestrator(settings, violet_transport=sandbox_transport) as stranger,
        SandboxControl(transport=sandbox_transport) as control,
    ):
        registered = await holder.start(checkout_request(skus=DIGITAL), run=False)
        assert (await other.run(registered.id)).state == "awaiting_payment"
        await control.add_fault("payment", "error", count=1, status=500)
        given = await other.provide_payment(registered.id, VISA)
        assert (given.state, given.pending_step, given.in_flight) == (
            "awaiting_payment",
            "apply_payment",
            True,
        )
        payments = (await control.stats())["calls_by_op"]["payment"]
        waiting = await stranger.run(registered.id, retry_wait=5)  # it never had the card
        assert waiting.state == "awaiting_payment", waiting.last_error
        assert (waiting.pending_step, waiting.in_flight) == (None, False)
        assert (await control.stats())["calls_by_op"]["payment"] == payments
