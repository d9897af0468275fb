"""The settle window of an unanswered step is measured on the database's clock, so a worker
whose wall clock runs ahead of it neither resubmits a cart Violet may still be working on nor
cancels a checkout whose cart Violet may still be making."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, tzinfo

import pytest

from orchestrator.api import Orchestrator
from orchestrator.errors import IllegalTransition
from tests.fixtures.orchestrator import (
    DIGITAL,
    TOKEN,
    checkout_request,
    one_second_calls,
    settle_shorter_than_timeout,
)
from tests.fixtures.sandbox import HttpSandbox


class _HostClockAnHourAhead(datetime):
    """The worker host's wall clock, an hour ahead of the database's (NTP broken)."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        return datetime.now(tz) + timedelta(hours=1)


#: The modules that read the host's wall clock near a step's age.
_WALL_CLOCK_READERS = ("orchestrator.api", "orchestrator.store.records")


async def test_a_worker_clock_ahead_of_the_database_does_not_cut_the_settle_window_short(
    database_url: str, http_sandbox: HttpSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in _WALL_CLOCK_READERS:
        monkeypatch.setattr(f"{module}.datetime", _HostClockAnHourAhead)
    settings = settle_shorter_than_timeout(database_url, http_sandbox.base_url)
    control = http_sandbox.control
    async with Orchestrator(settings) as orch:
        # Violet applies the submit after 1.4 s; the client gave up after 1.0 s.
        await control.add_fault("submit", "latency", count=1, latency_ms=1400)
        first = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        assert first.in_flight and first.last_error is not None
        assert first.last_error["class"] == "outcome_unknown"
        done = await orch.run(first.id, retry_wait=10)
        await asyncio.sleep(0.6)  # let the slow first submit finish at the sandbox
    assert done.state == "submitted"
    stats = await control.stats()
    assert stats["calls_by_op"]["submit"] == 1, "submitted again while the first still ran"
    assert stats["duplicate_submits"] == {}


async def test_a_host_clock_ahead_of_the_database_does_not_let_cancel_miss_a_running_create(
    database_url: str, http_sandbox: HttpSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkout just started (inserted, never claimed) with its create_cart still running at
    Violet: cancel measures the step's age on the database's clock, so it refuses for now."""
    for module in _WALL_CLOCK_READERS:
        monkeypatch.setattr(f"{module}.datetime", _HostClockAnHourAhead)
    settings = one_second_calls(database_url, http_sandbox.base_url)
    control = http_sandbox.control
    request = checkout_request(skus=DIGITAL, payment=TOKEN)
    async with Orchestrator(settings) as orch:
        # Violet makes the cart after 1.5 s; the client gave up after 1.0 s.
        await control.add_fault("create_cart", "latency", count=1, latency_ms=1500)
        first = await orch.start(request)
        assert (first.pending_step, first.in_flight) == ("create_cart", True)
        with pytest.raises(IllegalTransition, match="create_cart may still be running"):
            await orch.cancel(first.id)
        await asyncio.sleep(0.8)  # the slow create finishes at the sandbox
    stats = await control.stats()
    assert stats["carts_by_app_order_id"].get(request["app_order_id"])
