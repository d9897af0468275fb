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
