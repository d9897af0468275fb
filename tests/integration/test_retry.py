"""An operator's retry reopens a failed checkout at the step that failed and reads Violet before it
redoes anything: an order Violet took is recorded, never submitted again; a cart Violet made is
adopted, never made again; a card payment without its card waits for it. A failure that is
Violet's final word is refused and nothing changes."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from orchestrator import RetryRefused
from orchestrator.api import Orchestrator
from orchestrator.checkout import Checkout
from orchestrator.recovery import RecoveryJob
from orchestrator.sandbox import SandboxControl
from orchestrator.store.changes import CHECKOUT_REOPENED
from tests.fixtures.db import libpq_url, run_sql
from tests.fixtures.orchestrator import (
    DECLINED,
    DIGITAL,
    TOKEN,
    VISA,
    checkout_request,
    make_settings,
    one_second_calls,
    submit_applied_but_answer_lost,
)
from tests.fixtures.sandbox import HttpSandbox


async def _poisoned(orch: Orchestrator, database_url: str, checkout: Checkout) -> Checkout:
    """Its workers kept dying on it (more crashes than a submit's read-first allowance): recovery
    parks it as failed (`poison`) without reading Violet."""
    await run_sql(
        database_url,
        "UPDATE checkouts SET lease_owner = 'dead-worker', "
        "lease_expires_at = now() - interval '1 s', next_attempt_at = now() - interval '1 s', "
        "recoveries = %(r)s WHERE id = %(id)s",
        {"r": orch.settings.max_recoveries + 1, "id": checkout.id},
    )
    await RecoveryJob(orch.worker).run("until-idle")
    failed = await orch.get(checkout.id)
    assert failed.state == "failed" and failed.last_error is not None
    assert failed.last_error["type"] == "poison", failed.last_error
    return failed


def _kinds_after(events: list[Any], kind: str) -> list[tuple[Any, ...]]:
    start = next(i for i, e in enumerate(events) if e.kind == kind)
    return [(e.kind, e.from_state, e.to_state, e.step) for e in events[start:]]


async def test_a_retry_records_the_order_violet_took_and_never_submits_again(
    orch: Orchestrator, sandbox_control: SandboxControl, database_url: str
) -> None:
    """Violet took the submit (commit, then the connection dropped), the checkout then failed on
    our side (poison): the retry reads the cart, records `submitted`, sends no second submit."""
    first, _ = await submit_applied_but_answer_lost(orch, sandbox_control)
    await _poisoned(orch, database_url, first)
    assert (await sandbox_control.stats())["calls_by_op"]["submit"] == 1

    retried = await orch.retry(first.id, actor="ops:ada", reason="crash loop fixed in 1.4.2")

    stats = await sandbox_control.stats()
    assert retried.state == "submitted", retried.last_error
    assert retried.violet_status == "COMPLETED" and retried.finished_at is not None
    assert stats["calls_by_op"]["submit"] == 1, "a retry submitted the order a second time"
    assert stats["duplicate_submits"] == {}
    # The trail: the retry with its actor and reason, then the read of Violet, then the outcome.
    events = await orch.history(first.id)
    retried_event = next(e for e in events if e.kind == "retried")
    assert retried_event.detail == {
        "actor": "ops:ada",
        "reason": "crash loop fixed in 1.4.2",
        "error": {"class": "permanent", "type": "poison"},
        "reconcile_first": True,
    }
    after = [e for e in _kinds_after(events, "retried") if e[0] != "violet_call"]
    assert after == [
        ("retried", "failed", "priced", "submit"),
        ("transition", "failed", "priced", "retry"),
        ("reconciled", None, None, "submit"),
        ("transition", "priced", "submitted", "submit"),
    ]
    reconciled = next(e for e in events if e.kind == "reconciled" and e.seq > retried_event.seq)
    assert reconciled.detail is not None and reconciled.detail["found"] == "done"
    # The host's feed says the failure no longer holds, then that the checkout finished.
    feed = await _feed(database_url, first.id)
    assert [kind for kind, _ in feed] == [
        "checkout_finished",
        CHECKOUT_REOPENED,
        "checkout_finished",
    ]
    assert feed[1][1] == {
        "state": "priced",
        "step": "submit",
        "actor": "ops:ada",
        "error_type": "poison",
    }
    assert (feed[0][1]["state"], feed[2][1]["state"]) == ("failed", "submitted")


async def _feed(database_url: str, checkout_id: Any) -> list[tuple[str, Any]]:
    """The checkout's changes as stored (the feed's reader waits for other tests' transactions)."""
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url)) as conn:
        rows = await (
            await conn.execute(
                "SELECT kind, detail FROM checkout_changes WHERE checkout_id = %s ORDER BY id",
                [checkout_id],
            )
        ).fetchall()
    return [(kind, detail) for kind, detail in rows]


async def test_a_retry_without_run_leaves_the_step_in_flight_for_recovery(
    orch: Orchestrator, sandbox_control: SandboxControl, database_url: str
) -> None:
    first, _ = await submit_applied_but_answer_lost(orch, sandbox_control)
    await _poisoned(orch, database_url, first)
    failed = await orch.repo.get(first.id)
    assert failed is not None

    reopened = await orch.retry(first.app_order_id, run=False)

    assert (reopened.state, reopened.pending_step, reopened.in_flight) == ("priced", "submit", True)
    assert (reopened.attempt, reopened.lease_owner, reopened.finished_at) == (0, None, None)
    assert reopened.next_attempt_at is not None and reopened.last_error is None
    row = await orch.repo.get(first.id)
    assert row is not None and row.recoveries == 0 and row.lease_epoch > failed.lease_epoch
    # The step's start stays: a request of the failed run still running at Violet is waited out.
    assert (row.step_started_at, row.step_send_by) == (failed.step_started_at, failed.step_send_by)
    retried = next(e for e in await orch.history(first.id) if e.kind == "retried")
    assert retried.detail is not None and retried.detail["actor"] == "library"

    await RecoveryJob(orch.worker).run("until-idle")
    assert (await orch.get(first.id)).state == "submitted"
    assert (await sandbox_control.stats())["calls_by_op"]["submit"] == 1


async def _wait_until(check: Any, seconds: float = 10.0) -> None:
    """Poll the sandbox (not a timing assertion: a fault's latency ends when it ends)."""
    for _ in range(int(seconds / 0.1)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the sandbox never got there")


async def test_a_submit_violet_applied_after_the_attempts_ran_out_is_recorded_on_retry(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    """The submit's answer timed out, Violet still showed the cart unsubmitted once the settle
    window had passed, and the only attempt was used up: failed, `retries_exhausted`. Violet
    then applied the submit after all. The retry finds the order and records it: one submit."""
    settings = one_second_calls(database_url, http_sandbox.base_url).model_copy(
        update={"max_attempts": 1}
    )
    control = http_sandbox.control
    async with Orchestrator(settings) as orch:
        await control.add_fault("submit", "latency", count=1, latency_ms=3500)
        first = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        assert first.in_flight and first.last_error["class"] == "outcome_unknown"  # type: ignore[index]
        failed = await orch.run(first.id, retry_wait=10)
        assert failed.state == "failed", failed
        assert failed.last_error["type"] == "retries_exhausted"  # type: ignore[index]
        cart_id = first.violet_order_id
        assert cart_id is not None

        async def applied() -> bool:
            return (await control.cart(cart_id))["status"] != "IN_PROGRESS"

        await _wait_until(applied)
        retried = await orch.retry(first.id, actor="ops:bo")
        stats = await control.stats()
    assert retried.state == "submitted", retried.last_error
    assert stats["calls_by_op"]["submit"] == 1, "the retry submitted the order again"
    assert stats["duplicate_submits"] == {}


async def test_a_retry_adopts_the_cart_violet_made_after_create_cart_ran_out(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    """create_cart's answer timed out and no cart showed by the app_order_id within the settle
    window: failed, `retries_exhausted`. Violet made the cart after all; the retry finds it by
    the app_order_id and adopts it: one cart for the order, and the checkout goes on."""
    settings = one_second_calls(database_url, http_sandbox.base_url).model_copy(
        update={"max_attempts": 1}
    )
    control = http_sandbox.control
    request = checkout_request(skus=DIGITAL, payment=TOKEN)
    app_order_id = request["app_order_id"]
    async with Orchestrator(settings) as orch:
        await control.add_fault("create_cart", "latency", count=1, latency_ms=3500)
        first = await orch.start(request)
        assert (first.state, first.in_flight) == ("new", True)
        failed = await orch.run(first.id, retry_wait=10)
        assert failed.state == "failed" and failed.violet_order_id is None, failed
        assert failed.last_error["type"] == "retries_exhausted"  # type: ignore[index]

        async def made() -> bool:
            return bool((await control.stats())["carts_by_app_order_id"].get(app_order_id))

        await _wait_until(made)
        retried = await orch.retry(app_order_id, reason="Violet was slow")
        stats = await control.stats()
    made_carts = stats["carts_by_app_order_id"][app_order_id]
    assert made_carts == [retried.violet_order_id], "the retry made a second cart"
    assert stats["calls_by_op"]["create_cart"] == 1
    assert retried.state == "submitted", retried.last_error


@pytest.mark.parametrize("given_again", [False, True], ids=["first-payment", "card-given-again"])
async def test_a_retried_card_payment_without_its_card_waits_for_it(
    database_url: str,
    sandbox_transport: Any,
    sandbox_control: SandboxControl,
    given_again: bool,
) -> None:
    """The card dies with the failure (never stored). The reopened payment step reads the cart,
    finds no payment at Violet and waits in awaiting_payment for the card: no payment call is
    made without it, whether the payment failed the first time or after the card was given
    again (awaiting_payment)."""
    settings = make_settings(database_url, "http://sandbox/v1", max_attempts=1)
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        request = checkout_request(skus=DIGITAL, payment=VISA)
        if given_again:
            async with Orchestrator(settings, violet_transport=sandbox_transport) as starter:
                first = await starter.start(request, run=False)  # its card stays with it
            first = await orch.run(first.id)
            assert first.state == "awaiting_payment"
            await sandbox_control.add_fault("payment", "error", count=1, status=503)
            first = await orch.provide_payment(first.id, VISA)
        else:
            await sandbox_control.add_fault("payment", "error", count=1, status=503)
            first = await orch.start(request)
        assert first.pending_step == "apply_payment" and not first.in_flight, first
        failed = await orch.run(first.id, retry_wait=5)
        assert failed.state == "failed" and failed.last_error["type"] == "retries_exhausted"  # type: ignore[index]
        payments = (await sandbox_control.stats())["calls_by_op"]["payment"]

        retried = await orch.retry(first.id)

        assert retried.state == "awaiting_payment", retried
        assert (retried.pending_step, retried.in_flight) == (None, False)
        assert (await sandbox_control.stats())["calls_by_op"]["payment"] == payments
        done = await orch.provide_payment(first.id, VISA)
        assert done.state == "submitted", done.last_error


async def _row_and_events(database_url: str, checkout_id: Any) -> tuple[Any, ...]:
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url)) as conn:
        row = await (
            await conn.execute("SELECT to_jsonb(c) FROM checkouts c WHERE id = %s", [checkout_id])
        ).fetchone()
        events = await (
            await conn.execute(
                "SELECT count(*), max(seq) FROM checkout_events WHERE checkout_id = %s",
                [checkout_id],
            )
        ).fetchone()
        feed = await (
            await conn.execute(
                "SELECT count(*) FROM checkout_changes WHERE checkout_id = %s", [checkout_id]
            )
        ).fetchone()
    return row, events, feed


async def test_a_declined_card_is_refused_and_nothing_changes(
    orch: Orchestrator, sandbox_control: SandboxControl, database_url: str
) -> None:
    declined = await orch.start(checkout_request(skus=DIGITAL, payment=DECLINED))
    assert declined.state == "failed" and declined.last_error["type"] == "card_declined"  # type: ignore[index]
    before = await _row_and_events(database_url, declined.id)
    calls = (await sandbox_control.stats())["calls_by_op"]

    with pytest.raises(RetryRefused, match=r"the card was declined .*Violet's final word"):
        await orch.retry(declined.id, actor="ops:ada")

    assert await _row_and_events(database_url, declined.id) == before
    assert (await sandbox_control.stats())["calls_by_op"] == calls


@pytest.mark.parametrize("state", ["submitted", "open"])
async def test_a_checkout_not_failed_is_refused(
    orch: Orchestrator, database_url: str, state: str
) -> None:
    if state == "submitted":
        checkout = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        expected = "Violet holds the order"
    else:
        checkout = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN), run=False)
        expected = "not failed"
    before = await _row_and_events(database_url, checkout.id)
    with pytest.raises(RetryRefused, match=expected):
        await orch.retry(checkout.id)
    assert await _row_and_events(database_url, checkout.id) == before


async def test_actor_and_reason_are_checked_before_anything_changes(
    orch: Orchestrator, sandbox_control: SandboxControl, database_url: str
) -> None:
    from orchestrator import InvalidRequest

    first, _ = await submit_applied_but_answer_lost(orch, sandbox_control)
    failed = await _poisoned(orch, database_url, first)
    before = await _row_and_events(database_url, failed.id)
    for actor, reason, field in (
        ("  ", None, "actor"),
        ("ops", "x" * 501, "reason"),
        ("ops", "card 4242 4242 4242 4242", "reason"),
        ("ops\n", None, "actor"),
    ):
        with pytest.raises(InvalidRequest, match=field) as caught:
            await orch.retry(failed.id, actor=actor, reason=reason)
        assert "4242" not in str(caught.value)
    assert await _row_and_events(database_url, failed.id) == before


async def test_two_retries_at_once_reopen_once(
    orch: Orchestrator, sandbox_control: SandboxControl, database_url: str
) -> None:
    first, _ = await submit_applied_but_answer_lost(orch, sandbox_control)
    await _poisoned(orch, database_url, first)
    results = await asyncio.gather(
        orch.retry(first.id, run=False),
        orch.retry(first.id, run=False),
        return_exceptions=True,
    )
    reopened = [r for r in results if isinstance(r, Checkout)]
    refused = [r for r in results if isinstance(r, RetryRefused)]
    assert len(reopened) == 1 and len(refused) == 1, results
    assert "not failed" in str(refused[0])
    events = await orch.history(first.id)
    assert [e.kind for e in events].count("retried") == 1


async def test_bulk_retry_dry_run_lists_and_changes_nothing_then_the_run_retries(
    orch: Orchestrator, sandbox_control: SandboxControl, database_url: str
) -> None:
    lost = []
    for _ in range(2):
        first, _ = await submit_applied_but_answer_lost(orch, sandbox_control)
        lost.append(await _poisoned(orch, database_url, first))
    declined = await orch.start(checkout_request(skus=DIGITAL, payment=DECLINED))
    submitted = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
    ids = [c.id for c in (*lost, declined, submitted)]
    before = [await _row_and_events(database_url, i) for i in ids]

    report = await orch.retry_many(dry_run=True, actor="ops:ada")

    assert report.dry_run
    assert {c.id for c in report.retried} == {c.id for c in lost}
    assert [(c.id, c.error_type) for c in report.refused] == [(declined.id, "card_declined")]
    assert "Violet's final word" in (report.refused[0].refused or "")
    assert all((c.failed_in, c.step) == ("priced", "submit") for c in report.retried)
    assert [await _row_and_events(database_url, i) for i in ids] == before
    assert (await orch.retry_many(dry_run=True, error_type="poison")).refused == ()

    done = await orch.retry_many(actor="ops:ada", reason="bulk after the fix")

    assert not done.dry_run
    assert {c.id for c in done.retried} == {c.id for c in lost}
    assert [c.id for c in done.refused] == [declined.id]
    for checkout in lost:
        reopened = await orch.get(checkout.id)
        assert (reopened.state, reopened.in_flight, reopened.lease_owner) == (
            "priced",
            True,
            None,
        )
    await RecoveryJob(orch.worker).run("until-idle")
    assert [(await orch.get(c.id)).state for c in lost] == ["submitted", "submitted"]
    assert (await orch.get(declined.id)).state == "failed"
    stats = await sandbox_control.stats()
    assert stats["duplicate_submits"] == {}
    assert all(count == 1 for count in stats["submits"].values())
    # Nothing is left to retry.
    assert (await orch.retry_many(dry_run=True)).retried == ()


def test_the_sync_facade_retries_and_refuses_alike(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    from orchestrator import SyncOrchestrator

    settings = make_settings(database_url, http_sandbox.base_url)
    with SyncOrchestrator(settings) as orch:
        declined = orch.start(checkout_request(skus=DIGITAL, payment=DECLINED))
        with pytest.raises(RetryRefused, match="declined"):
            orch.retry(declined.id, actor="ops:ada")
        report = orch.retry_many(dry_run=True, actor="ops:ada")
        assert [c.id for c in report.refused] == [declined.id] and report.retried == ()
