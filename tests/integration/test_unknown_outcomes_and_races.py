"""Unknown outcomes and races that could submit twice, drop a checkout or record a wrong state.

Each test guards an interleaving that once broke the promise, and failed before its fix; its
docstring says the interleaving and what it did. Fixes: the settle window counts the client's
total timeout; a failed probe backs off; a claim re-checks the state it was taken for; poison
reads a submit first; a refused cancel takes no lease; cancel releases a cart create_cart's lost
answer made."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from orchestrator.api import Orchestrator
from orchestrator.config import Settings
from orchestrator.errors import IllegalTransition
from orchestrator.recovery import RecoveryJob
from orchestrator.sandbox import SandboxControl
from tests.fixtures.db import run_sql
from tests.fixtures.orchestrator import DIGITAL, TOKEN, VISA, checkout_request, make_settings
from tests.fixtures.sandbox import HttpSandbox


async def _submit_applied_but_answer_lost(
    orch: Orchestrator, control: SandboxControl
) -> tuple[Any, dict[str, Any]]:
    """A checkout whose submit Violet applied while the answer was lost (outcome unknown)."""
    await control.add_fault("submit", "drop_after_apply", count=1)
    request = checkout_request(skus=DIGITAL, payment=TOKEN)
    first = await orch.start(request)
    assert (first.state, first.pending_step, first.in_flight) == ("priced", "submit", True)
    assert (await control.cart(first.violet_order_id))["status"] == "COMPLETED"
    return first, request


# ---------------------------------------------------------------------------------------------
# 1. The submit settle time is measured from the *start* of the first attempt.


async def test_a_timed_out_submit_is_not_resubmitted_while_violet_may_still_be_running_it(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    """steps.py `_settle_or_redo` (Submit.reconcile): the age of the unanswered submit is taken
    from `step_started_at`, i.e. when the request was *sent*. With the defaults
    (settle 10 s < read timeout 30 s) a submit that timed out is already "older than the settle
    time" when it is reconciled, so a cart Violet is still working on is submitted again at once.
    Same ratio here: settle 0.8 s, read timeout 1.0 s, Violet takes 1.4 s to apply the submit."""
    settings = make_settings(
        database_url,
        http_sandbox.base_url,
        submit_settle_seconds=0.8,
        read_timeout=1.0,
        total_timeout=1.5,
    )
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


# ---------------------------------------------------------------------------------------------
# 2. A reconcile probe that keeps failing never counts as an attempt.


async def test_a_probe_that_keeps_failing_backs_off_until_recovery_goes_idle(
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """runner.py: failed reconcile probes in a row back off further each time, so
    `recover --until-idle` ends once the next probe is beyond its horizon. The submit's outcome
    is still unknown, so the checkout is neither failed nor resubmitted: it stays due.
    (Before the fix `attempt` stayed 1, every delay was backoff(1) and until-idle never ended.)"""
    monkeypatch.setattr("orchestrator.engine.retries.random.uniform", lambda _low, high: high)
    settings = make_settings(
        database_url, "http://sandbox/v1", max_attempts=3, backoff_base=0.1, backoff_cap=60
    )
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        first, _ = await _submit_applied_but_answer_lost(orch, sandbox_control)
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


# ---------------------------------------------------------------------------------------------
# 3. provide_payment drives whatever row the claim returns, even a terminal one.


async def test_provide_payment_racing_a_cancel_does_not_reopen_the_canceled_checkout(
    settings: Settings,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """api.py `provide_payment`: the state is checked on a first read, then `repo.claim` is
    called; for a row that became terminal in between, `claim` returns the terminal row
    *without* taking a lease (repository.py `Claim(current, None)`), and provide_payment sets
    `pending_step = apply_payment` and drives it: the canceled checkout gets an intent write
    (pending_step, in_flight, a lease, finished_at cleared, a step_started event) and the card
    is sent to Violet for a released cart."""
    async with (
        Orchestrator(settings, violet_transport=sandbox_transport) as owner,
        Orchestrator(settings, violet_transport=sandbox_transport) as other,
    ):
        registered = await owner.start(checkout_request(skus=DIGITAL, payment=VISA), run=False)
        # Driven by a process that never had the card: it parks in awaiting_payment.
        waiting = await other.run(registered.id)
        assert waiting.state == "awaiting_payment"
        payments_before = (await sandbox_control.stats())["calls_by_op"].get("payment", 0)

        real_claim = owner.repo.claim

        async def claim_after_a_concurrent_cancel(checkout_id: Any, **kwargs: Any) -> Any:
            await other.cancel(checkout_id)  # lands between provide_payment's read and claim
            return await real_claim(checkout_id, **kwargs)

        monkeypatch.setattr(owner.repo, "claim", claim_after_a_concurrent_cancel)
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do; what is left matters
            await owner.provide_payment(registered.id, dict(VISA))

        row = await owner.repo.get(registered.id)
        assert row is not None
        events = await owner.history(registered.id)
        kinds = [e.kind for e in events]
        after_cancel = kinds[kinds.index("canceled") + 1 :]
        payments_after = (await sandbox_control.stats())["calls_by_op"].get("payment", 0)
    assert row.state == "canceled"
    problems = {
        "re-opened (pending_step, in_flight, lease_owner)": (
            row.pending_step,
            row.in_flight,
            row.lease_owner,
        ),
        "finished_at": row.finished_at,
        "events after canceled": after_cancel,
        "payment calls sent to Violet after the cancel": payments_after - payments_before,
    }
    assert (row.pending_step, row.in_flight, row.lease_owner) == (None, False, None), problems
    assert row.finished_at is not None, problems
    assert "step_started" not in after_cancel, problems
    assert payments_after == payments_before, problems


# ---------------------------------------------------------------------------------------------
# 4. Poison fails an in-flight submit without reconciling it.


async def test_poison_does_not_record_failed_for_a_submit_violet_completed(
    orch: Orchestrator, sandbox_control: SandboxControl, database_url: str
) -> None:
    """runner.py `_drive` (poison check): when `recoveries > max_recoveries` the in-flight step
    is failed *before* its reconcile probe runs. For a submit, Violet may hold the order: here it
    is COMPLETED (charged) while the checkout ends terminal `failed` and is never looked at
    again. (The counter also never resets, so takeovers on earlier steps count too.)"""
    first, _ = await _submit_applied_but_answer_lost(orch, sandbox_control)
    await run_sql(
        database_url,
        "UPDATE checkouts SET lease_owner = 'dead-worker', "
        "lease_expires_at = now() - interval '1 s', next_attempt_at = now() - interval '1 s', "
        "recoveries = %(r)s WHERE id = %(id)s",
        {"r": orch.settings.max_recoveries, "id": first.id},
    )
    await RecoveryJob(orch.worker).run("until-idle")
    checkout = await orch.get(first.id)
    violet = await sandbox_control.cart(first.violet_order_id)
    assert violet["status"] == "COMPLETED"
    assert checkout.state != "failed", (
        f"Violet completed the order but it is recorded as failed: {checkout.last_error}"
    )


# ---------------------------------------------------------------------------------------------
# 5. A refused cancel keeps the lease it took and counts as a crash recovery.


async def test_a_refused_cancel_of_an_in_flight_submit_leaves_nothing_behind(
    orch: Orchestrator, sandbox_control: SandboxControl, database_url: str
) -> None:
    """api.py `cancel` claims the lease first; runner.py `cancel` then refuses an in-flight
    submit ("let recovery settle it first") but the claim is never given back: the canceler now
    holds the lease for `lease_seconds` (recovery cannot settle it meanwhile), a
    `lease_taken_over` event names it, and the takeover bumps the poison counter, so a backend
    retrying cancel walks the checkout into `failed`/poison (test 4) with the order at Violet."""
    first, _ = await _submit_applied_but_answer_lost(orch, sandbox_control)
    await run_sql(  # the worker that sent the submit died; its lease has expired
        database_url,
        "UPDATE checkouts SET lease_owner = 'dead-worker', "
        "lease_expires_at = now() - interval '1 s', next_attempt_at = now() - interval '1 s' "
        "WHERE id = %(id)s",
        {"id": first.id},
    )
    before = await orch.repo.get(first.id)
    assert before is not None
    with pytest.raises(IllegalTransition):
        await orch.cancel(first.id)
    after = await orch.repo.get(first.id)
    assert after is not None
    assert after.lease_owner != orch.worker_id, (
        f"the refused cancel kept the lease until {after.lease_expires_at}"
    )
    assert after.recoveries == before.recoveries, "a refused cancel counted as a crash recovery"


# ---------------------------------------------------------------------------------------------
# 6. Canceling while create_cart is in flight leaks the Violet cart.


async def test_cancel_with_create_cart_in_flight_releases_the_cart_violet_made(
    settings: Settings, sandbox_transport: httpx.AsyncBaseTransport, sandbox_control: SandboxControl
) -> None:
    """runner.py `cancel`: only `row.violet_order_id` was released. With create_cart in flight
    (answer lost) Violet may have made the cart; cancel neither looked it up by app_order_id (the
    create_cart reconcile rule) nor recorded it, so an IN_PROGRESS cart was left at Violet that
    nothing would ever release (design §3: "an orphan ... which is recorded and released").
    While the create may still be running (its settle window), cancel is refused, saying when."""
    quick = settings.model_copy(update={"total_timeout": 0.4, "read_timeout": 0.4})
    await sandbox_control.add_fault("create_cart", "drop_after_apply", count=1)
    request = checkout_request(skus=DIGITAL, payment=TOKEN)
    async with Orchestrator(quick, violet_transport=sandbox_transport) as orch:
        first = await orch.start(request)
        assert (first.state, first.pending_step, first.in_flight) == ("new", "create_cart", True)
        with pytest.raises(IllegalTransition, match="create_cart may still be running"):
            await orch.cancel(first.id)
        assert (await orch.repo.get(first.id)).lease_owner is None  # type: ignore[union-attr]
        await asyncio.sleep(2 * 0.4 + quick.submit_settle_seconds)  # the settle window
        canceled = await orch.cancel(first.id)
    assert canceled.state == "canceled"
    stats = await sandbox_control.stats()
    (cart_id,) = stats["carts_by_app_order_id"][request["app_order_id"]]
    assert cart_id in stats["deleted_carts"], "the Violet cart of a canceled checkout was leaked"


async def test_a_probe_refused_for_our_credentials_keeps_the_submit_in_flight(
    database_url: str, sandbox_transport: httpx.AsyncBaseTransport, sandbox_control: SandboxControl
) -> None:
    """runner.py `_schedule_retry`: an auth error on the probe of a submit whose answer was lost
    failed the checkout, although Violet held the order (credentials rotated meanwhile). It
    says nothing about the order: the step stays in flight and is read again later."""
    settings = make_settings(database_url, "http://sandbox/v1")
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        first, _ = await _submit_applied_but_answer_lost(orch, sandbox_control)
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
