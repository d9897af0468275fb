"""Reconcile probes of a step whose outcome is unknown: a probe that fails says nothing about
the order, so it never uses up the step's attempts, backs off further each time, and never fails
a checkout Violet may hold."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from orchestrator.api import Orchestrator
from orchestrator.recovery import RecoveryJob
from orchestrator.sandbox import SandboxControl
from tests.fixtures.orchestrator import (
    DIGITAL,
    TOKEN,
    checkout_request,
    make_settings,
    submit_applied_but_answer_lost,
)


async def test_failed_probes_do_not_exhaust_a_submit_that_violet_never_applied(
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> None:
    """Only answered probes lead to a decision. A submit whose request never reached Violet
    (connection dropped before apply), followed by max_attempts-1 failed GET-cart probes (Violet
    flaky for a few seconds), is submitted again once a probe answers "not done", and completes:
    it is never failed with `retries_exhausted` after a single submit."""
    settings = make_settings(
        database_url,
        "http://sandbox/v1",
        max_attempts=3,
        submit_settle_seconds=0.0,
        total_timeout=0.2,
    )
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        await sandbox_control.add_fault("submit", "drop_before_apply", count=1)
        first = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        assert (first.state, first.pending_step, first.in_flight) == ("priced", "submit", True)
        assert (await sandbox_control.cart(first.violet_order_id))["status"] == "IN_PROGRESS"
        # Violet's GET is down for a moment: two probes fail (each is retried inline 4 times
        # by the client), fewer than max_attempts.
        await sandbox_control.add_fault("get_cart", "error", count=8, status=500)
        await asyncio.sleep(0.3)  # past the settle window
        await RecoveryJob(orch.worker).run("until-idle", concurrency=1)
        checkout = await orch.get(first.id)
        submits = (await sandbox_control.stats())["calls_by_op"]["submit"]
    assert checkout.state == "submitted", (
        f"one submit sent, never applied, yet the checkout ended {checkout.state}: "
        f"{checkout.last_error}; submits sent: {submits}"
    )


async def test_a_probe_that_keeps_failing_backs_off_until_recovery_goes_idle(
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Failed reconcile probes in a row back off further each time, so `recover --until-idle`
    ends once the next probe is beyond its horizon. The submit's outcome is still unknown, so
    the checkout is neither failed nor resubmitted: it stays due."""
    monkeypatch.setattr("orchestrator.engine.retries.random.uniform", lambda _low, high: high)
    settings = make_settings(
        database_url, "http://sandbox/v1", max_attempts=3, backoff_base=0.1, backoff_cap=60
    )
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        first, _ = await submit_applied_but_answer_lost(orch, sandbox_control)
        await sandbox_control.add_fault("get_cart", "error", probability=1.0, status=500)
        job = RecoveryJob(orch.worker, idle_horizon=1.0)
        await asyncio.wait_for(job.run("until-idle", concurrency=1), timeout=30)
        row = await orch.repo.get(first.id)
        events = await orch.history(first.id)
    assert row is not None
    delays = [e.detail["delay_s"] for e in events if e.kind == "retry_scheduled"]
    # The first retry is the lost answer's; then one per failed probe, each twice as long,
    # until one lies beyond the horizon (1.6 s > 1.0 s).
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6], delays
    assert (row.state, row.pending_step, row.in_flight) == ("priced", "submit", True)
    # Probes never use up the step's attempts (the outcome is unknown); they are counted apart.
    assert row.attempt == 1 and row.last_error is not None and row.last_error["probes"] == 4
    assert (await sandbox_control.stats())["calls_by_op"]["submit"] == 1


async def test_a_probe_refused_for_our_credentials_keeps_the_submit_in_flight(
    database_url: str, sandbox_transport: httpx.AsyncBaseTransport, sandbox_control: SandboxControl
) -> None:
    """An auth error on the probe of a submit whose answer was lost (credentials rotated
    meanwhile) says nothing about the order Violet may hold: the step stays in flight and is
    read again later, and completes once the credentials work."""
    settings = make_settings(database_url, "http://sandbox/v1")
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        first, _ = await submit_applied_but_answer_lost(orch, sandbox_control)
        await sandbox_control.add_fault("get_cart", "error", count=2, status=403)
        await RecoveryJob(orch.worker, idle_horizon=0.0).run("once")
        refused = await orch.repo.get(first.id)
        assert refused is not None
        assert (refused.state, refused.pending_step, refused.in_flight) == (
            "priced",
            "submit",
            True,
        ), refused.last_error
        done = await orch.run(first.id, retry_wait=5)  # credentials work again
    assert done.state == "submitted"
    assert (await sandbox_control.stats())["calls_by_op"]["submit"] == 1
