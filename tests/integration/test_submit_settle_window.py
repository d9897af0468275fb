"""A submit whose answer never came is not sent again while Violet may still be running it: the
settle window lasts two whole-call timeouts (a resumed submit reads the cart first, so its
request may leave one total_timeout after the step starts) plus the settle time."""

from __future__ import annotations

import asyncio

from orchestrator.api import Orchestrator
from tests.fixtures.orchestrator import (
    DIGITAL,
    TOKEN,
    checkout_request,
    one_second_calls,
    settle_shorter_than_timeout,
)
from tests.fixtures.sandbox import HttpSandbox


async def test_a_timed_out_submit_is_not_resubmitted_while_violet_may_still_be_running_it(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    """The window counts the client's total timeout, not only the settle time: with the default
    ratio (settle 10 s < read timeout 30 s) a submit that timed out is already older than the
    settle time when it is reconciled. Same ratio here: settle 0.8 s, read timeout 1.0 s, and
    Violet takes 1.4 s to apply the submit; it is sent exactly once."""
    settings = settle_shorter_than_timeout(database_url, http_sandbox.base_url)
    control = http_sandbox.control
    async with Orchestrator(settings) as orch:
        await control.add_fault("submit", "latency", count=1, latency_ms=1400)
        first = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        assert first.in_flight and first.last_error["class"] == "outcome_unknown"
        done = await orch.run(first.id, retry_wait=5)
        await asyncio.sleep(0.6)  # let the slow first submit finish at the sandbox
        stats = await control.stats()
        assert done.state == "submitted"
        assert stats["calls_by_op"]["submit"] == 1, (
            "the cart was submitted a second time while the first submit was still running",
            stats["calls_by_op"]["submit"],
            stats["duplicate_submits"],
        )
        assert stats["duplicate_submits"] == {}


async def test_a_resumed_submit_behind_a_slow_cart_read_is_not_resubmitted_while_running(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    """A resumed submit (after a 503 Violet never applied; equally after a Redo or a 3-D Secure
    confirm) first reads the cart and only then sends the submit, so the request may leave up to
    one total_timeout after the step starts and still run at Violet until 2 x total_timeout +
    settle. Here: total 1.0 s, settle 0.3 s, so the window is 2.3 s; the cart read takes 0.8 s,
    the submit 1.2 s (the client gives up at 1.8 s, Violet applies it at 2.0 s). A reconcile at
    ~1.85 s must not call the IN_PROGRESS cart settled and submit it a second time."""
    settings = one_second_calls(database_url, http_sandbox.base_url)  # window 2.3 s
    control = http_sandbox.control
    async with Orchestrator(settings) as orch:
        await control.add_fault("submit", "error", count=1, status=503)  # not applied
        first = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        assert (first.state, first.pending_step, first.in_flight) == ("priced", "submit", False)
        await control.add_fault("get_cart", "latency", count=1, latency_ms=800)
        await control.add_fault("submit", "latency", count=1, latency_ms=1200)
        done = await orch.run(first.id, retry_wait=5)
        await asyncio.sleep(1.0)  # let the slow submit finish at the sandbox
        stats = await control.stats()
    # The 503 (never applied), then exactly one submit that Violet applies.
    assert stats["calls_by_op"]["submit"] == 2 and stats["duplicate_submits"] == {}, (
        "the cart was submitted again while the previous submit was still running at Violet",
        done.state,
        stats["calls_by_op"]["submit"],
        stats["duplicate_submits"],
    )
