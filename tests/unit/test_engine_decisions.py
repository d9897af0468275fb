"""The step protocol's decisions, driven against the in-memory store and the in-process sandbox.

No database: tests/fakes/repository.py keeps the store's rules (fencing, the state graph,
append-only history) and a clock that moves only when told, so each decision is checked
exactly, in milliseconds. The store itself is tested against PostgreSQL (tests/integration).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from orchestrator import states
from orchestrator.engine.steps import NEED_CARD
from orchestrator.errors import LeaseLost
from orchestrator.sandbox.examples import DECLINED, TOKEN, VISA, example_request
from tests.fakes.engine import LEASE_SECONDS, WORKER, AtPoint, EngineHarness

_WALK = [
    (states.CREATE_CART, states.NEW, states.CREATED),
    (states.APPLY_CUSTOMER, states.CREATED, states.CUSTOMER_APPLIED),
    (states.APPLY_SHIPPING, states.CUSTOMER_APPLIED, states.SHIPPING_APPLIED),
    (states.APPLY_PAYMENT, states.SHIPPING_APPLIED, states.PAID),
    (states.PRICE, states.PAID, states.PRICED),
    (states.SUBMIT, states.PRICED, states.SUBMITTED),
]


@pytest.fixture
async def engine() -> AsyncIterator[EngineHarness]:
    harness = EngineHarness()
    yield harness
    await harness.aclose()


@pytest.fixture
def top_of_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full jitter picks the top of its range: a retry's delay is the backoff itself."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)


def _request(payment: dict[str, Any]) -> dict[str, Any]:
    return example_request(f"unit-{uuid.uuid4().hex[:12]}", payment=payment)


def _trail_of_walk() -> list[tuple[Any, ...]]:
    trail: list[tuple[Any, ...]] = [("created", None, None, states.NEW)]
    for step, before, after in _WALK:
        trail += [("step_started", step, None, None), ("transition", step, before, after)]
    return trail


@pytest.mark.parametrize("payment", [TOKEN, VISA], ids=["token", "card"])
async def test_happy_path_reaches_submitted_with_one_write_per_step(
    engine: EngineHarness, payment: dict[str, Any]
) -> None:
    result = await engine.start(_request(payment))

    row = await engine.store.get(result.row.id)
    assert row is not None
    assert (row.state, row.pending_step, row.in_flight) == (states.SUBMITTED, None, False)
    assert row.lease_owner is None and row.next_attempt_at is None
    assert row.finished_at == engine.clock.now
    assert await engine.trail(row.id) == _trail_of_walk()
    # Each step's transition keeps the cart it ended with (the row keeps only the last).
    done = [e for e in await engine.store.events(row.id) if e["kind"] == "transition"]
    assert [(e["step"], e["attempt"]) for e in done] == [(step, 1) for step, _, _ in _WALK]
    carts = [e["detail"]["cart"] for e in done]
    assert [cart["priced"] for cart in carts] == [False] * 4 + [True] * 2
    assert carts[-1] == {
        "cart_id": row.violet_order_id,
        "status": "COMPLETED",
        "priced": True,
        "total": row.total,
    }
    # The outcome write of each step is the intent write of the next: one write per step.
    assert engine.store.writes[row.id] == len(_WALK)
    assert engine.sandbox.calls_by_op["submit"] == 1


async def _retry_scheduled(engine: EngineHarness, checkout_id: uuid.UUID) -> dict[str, Any]:
    events = await engine.store.events(checkout_id)
    assert events[-1]["kind"] == "retry_scheduled"
    detail: dict[str, Any] = events[-1]["detail"]
    return {**detail, "attempt": events[-1]["attempt"]}


@pytest.mark.usefixtures("top_of_backoff")
async def test_retryable_error_schedules_a_retry_with_backoff_and_keeps_the_attempt(
    engine: EngineHarness,
) -> None:
    engine.fault("customer", "error", status=503, count=2)
    first = await engine.start(_request(TOKEN))
    checkout_id = first.row.id

    for attempt, backoff in ((1, 1.0), (2, 2.0)):
        row = await engine.store.get(checkout_id)
        assert row is not None
        assert (row.state, row.pending_step) == (states.CREATED, states.APPLY_CUSTOMER)
        # A 503 proves nothing was applied: no reconcile first, and the attempt counts.
        assert row.in_flight is False
        assert row.attempt == attempt
        assert row.lease_owner is None
        assert row.next_attempt_at == engine.clock.now + timedelta(seconds=backoff)
        assert row.last_error is not None
        assert (row.last_error["class"], row.last_error["status"]) == ("retryable", 503)
        scheduled = await _retry_scheduled(engine, checkout_id)
        assert scheduled == {"delay_s": backoff, "reconcile_first": False, "attempt": attempt}
        error = (await engine.store.events(checkout_id))[-2]
        assert (error["kind"], error["attempt"], error["http_status"]) == ("error", attempt, 503)
        result = await engine.resume(checkout_id)

    assert result.row.state == states.SUBMITTED
    assert result.row.last_error is None
    started = [e for e in await engine.store.events(checkout_id) if e["kind"] == "step_started"]
    assert [e["attempt"] for e in started if e["step"] == states.APPLY_CUSTOMER] == [1, 2, 3]
    assert engine.sandbox.calls_by_op["customer"] == 3


async def test_permanent_error_fails_with_its_error_type(engine: EngineHarness) -> None:
    result = await engine.start(_request(DECLINED))

    row = await engine.store.get(result.row.id)
    assert row is not None
    assert (row.state, row.pending_step, row.in_flight) == (states.FAILED, None, False)
    assert row.last_error is not None
    assert (row.last_error["class"], row.last_error["type"]) == ("permanent", "card_declined")
    assert row.last_error["step"] == states.SUBMIT
    # Never retried: no due time, the lease given back, one submit.
    assert row.next_attempt_at is None and row.lease_owner is None
    assert row.finished_at == engine.clock.now
    trail = await engine.trail(row.id)
    assert trail[-2:] == [
        ("error", states.SUBMIT, None, None),
        ("transition", states.SUBMIT, states.PRICED, states.FAILED),
    ]
    events = await engine.store.events(row.id)
    assert (events[-2]["error_type"], events[-2]["http_status"]) == ("card_declined", 400)
    # The parts of the error summary without a column of their own are in the event's detail.
    decline = {"violet_type": "card_declined", "decline_code": "card_declined"}
    assert events[-2]["detail"] == decline
    assert row.last_error.items() >= decline.items()
    assert engine.sandbox.calls_by_op["submit"] == 1


async def test_lost_submit_answer_is_reconciled_without_a_second_submit(
    engine: EngineHarness,
) -> None:
    engine.fault("submit", "drop_after_apply")
    first = await engine.start(_request(TOKEN))
    checkout_id = first.row.id

    row = await engine.store.get(checkout_id)
    assert row is not None
    assert (row.state, row.pending_step) == (states.PRICED, states.SUBMIT)
    # Violet may hold the order: the step stays in flight, to be read before anything else.
    assert row.in_flight is True
    assert row.last_error is not None and row.last_error["class"] == "outcome_unknown"
    scheduled = await _retry_scheduled(engine, checkout_id)
    assert scheduled["reconcile_first"] is True
    error = (await engine.store.events(checkout_id))[-2]
    assert (error["kind"], error["step"], error["error_class"]) == (
        "error",
        states.SUBMIT,
        "outcome_unknown",
    )
    assert engine.sandbox.calls_by_op["submit"] == 1

    resumed = await engine.resume(checkout_id)

    assert resumed.row.state == states.SUBMITTED
    assert engine.sandbox.calls_by_op["submit"] == 1
    assert sum(engine.sandbox.submits.values()) == 1
    events = await engine.store.events(checkout_id)
    reconciled = [e for e in events if e["kind"] == "reconciled"]
    assert [(e["step"], e["detail"]["decision"]) for e in reconciled] == [
        (states.SUBMIT, "advance")
    ]
    submit_starts = [e for e in events if e["kind"] == "step_started" and e["step"] == "submit"]
    assert len(submit_starts) == 1  # reconciled, not started again


async def test_stale_lease_epoch_stops_the_runner_with_lease_lost(engine: EngineHarness) -> None:
    row = await engine.insert(_request(TOKEN))
    # Our lease expired (a long pause) and another worker took the checkout over.
    engine.clock.advance(LEASE_SECONDS + 1)
    taken = await engine.store.claim(row.id, worker="worker-b", lease_seconds=LEASE_SECONDS)
    assert taken.row.lease_epoch == row.lease_epoch + 1
    events_before = await engine.store.events(row.id)
    seq_before = row.event_seq

    with pytest.raises(LeaseLost):
        await engine.runner.drive(row, intent_committed=True)

    stored = await engine.store.get(row.id)
    assert stored is not None
    assert (stored.state, stored.lease_owner) == (states.NEW, "worker-b")
    assert await engine.store.events(row.id) == events_before
    assert row.event_seq == seq_before  # the refused write's events got no numbers
    # The runner stopped at the refused write: no step after create_cart reached Violet.
    assert engine.sandbox.calls_by_op["create_cart"] == 1
    assert engine.sandbox.calls_by_op["customer"] == 0


@pytest.mark.parametrize(
    "point",
    ["after_outcome_commit:create_cart", "after_intent_commit:apply_shipping"],
)
async def test_take_over_during_a_drive_stops_it_at_its_next_write(
    engine: EngineHarness, point: str
) -> None:
    checkout: dict[str, uuid.UUID] = {}

    def take_over() -> None:
        engine.clock.advance(LEASE_SECONDS + 1)
        engine.store.claim_now(checkout["id"], worker="worker-b", lease_seconds=LEASE_SECONDS)

    hook = AtPoint(point, take_over)
    runner = engine.runner_for(WORKER, crash=hook)
    row = await engine.insert(_request(TOKEN))
    checkout["id"] = row.id

    with pytest.raises(LeaseLost):
        await runner.drive(row, intent_committed=True)

    assert hook.reached == 1
    events = await engine.store.events(row.id)
    taken_at = next(e["seq"] for e in events if e["kind"] == "lease_taken_over")
    assert all(e["worker"] == "worker-b" for e in events if e["seq"] >= taken_at)
    stored = await engine.store.get(row.id)
    assert stored is not None and stored.lease_owner == "worker-b"
    assert engine.sandbox.calls_by_op["payment"] == 0
    assert engine.sandbox.calls_by_op["submit"] == 0


async def test_card_checkout_without_its_card_parks_awaiting_payment(
    engine: EngineHarness,
) -> None:
    result = await engine.start(_request(VISA), card=False)

    row = await engine.store.get(result.row.id)
    assert row is not None
    assert row.state == states.AWAITING_PAYMENT
    assert (row.pending_step, row.in_flight, row.attempt) == (None, False, 0)
    assert row.waiting_reason == NEED_CARD
    # Parked for outside input: the lease is given back and nothing makes it due on its own.
    assert row.lease_owner is None and row.next_attempt_at is None
    assert row.finished_at is None
    trail = await engine.trail(row.id)
    assert trail[-2:] == [
        ("transition", states.APPLY_PAYMENT, states.SHIPPING_APPLIED, states.AWAITING_PAYMENT),
        ("waiting", None, None, states.AWAITING_PAYMENT),
    ]
    parked = (await engine.store.events(row.id))[-2]
    assert parked["detail"] == {"reason": NEED_CARD}  # no cart: no call was made without the card
    assert engine.sandbox.calls_by_op["payment"] == 0
