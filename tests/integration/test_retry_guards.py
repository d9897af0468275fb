"""The database lets a failed checkout out of `failed` by exactly one move, whoever writes: a
retry's reopen where its audit trail says it failed, with that step in flight, no attempt made,
no crash counted, a new lease epoch and its events appended, changing nothing else. Every other
UPDATE of a failed row stays refused (migration 0011)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.store.schema import (
    COLUMNS_CHANGING_AFTER_FINISH,
    COLUMNS_CHANGING_ON_REOPEN,
    SQLSTATE_APPEND_ONLY,
    SQLSTATE_ILLEGAL_TRANSITION,
    checkouts,
)
from tests.fixtures.checkout_rows import CHANGED_VALUE

#: A reopen the guard accepts: back to `priced` with the failed `submit` in flight.
REOPEN = {
    "state": "'priced'",
    "pending_step": "'submit'",
    "in_flight": "true",
    "attempt": "0",
    "recoveries": "0",
    "next_attempt_at": "now()",
    "last_error": "NULL",
    "finished_at": "NULL",
    "lease_epoch": "lease_epoch + 1",
    "event_seq": "event_seq + 2",
    "version": "version + 1",
    "updated_at": "now()",
}


@pytest.fixture
def engine(shared_engine: AsyncEngine) -> AsyncEngine:
    return shared_engine


async def _run(engine: AsyncEngine, statement: str, **params: Any) -> int:
    async with engine.begin() as conn:
        return (await conn.execute(sa.text(statement), params)).rowcount


async def failed_at_submit(engine: AsyncEngine, *, with_failure: bool = True) -> uuid.UUID:
    """A checkout that failed at its submit (priced -> failed), as the recorder leaves it: the
    row failed, with an attempt and a crash counted, and the transition in its audit trail."""
    checkout_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            checkouts.insert().values(
                id=checkout_id,
                app_order_id=f"order-{uuid.uuid4().hex[:8]}",
                state="new",
                request={"skus": [{"sku_id": 196777, "quantity": 1}], "currency": "USD"},
                payment_kind="token",
                currency="USD",
                violet_order_id=uuid.uuid4().int % 10**12,
                sub_total=1000,
                shipping_total=500,
                tax_total=80,
                discount_total=0,
                total=1580,
            )
        )
    for state in ("created", "customer_applied", "paid", "priced"):
        await _run(
            engine, "UPDATE checkouts SET state = :s WHERE id = :id", s=state, id=checkout_id
        )
    await _run(
        engine,
        "UPDATE checkouts SET state = 'failed', pending_step = NULL, in_flight = false, "
        "attempt = 8, recoveries = 2, step_started_at = now() - interval '1 minute', "
        'last_error = \'{"class": "permanent", "type": "retries_exhausted"}\', '
        "finished_at = now(), event_seq = 2 WHERE id = :id",
        id=checkout_id,
    )
    if with_failure:
        await _run(
            engine,
            "INSERT INTO checkout_events (checkout_id, seq, kind, from_state, to_state, step) "
            "VALUES (:id, 1, 'error', NULL, NULL, 'submit'), "
            "(:id, 2, 'transition', 'priced', 'failed', 'submit')",
            id=checkout_id,
        )
    return checkout_id


async def _row(engine: AsyncEngine, checkout_id: uuid.UUID) -> Any:
    async with engine.connect() as conn:
        statement = sa.text("SELECT to_jsonb(c) FROM checkouts c WHERE id = :id")
        return (await conn.execute(statement, {"id": checkout_id})).scalar_one()


def _update(values: dict[str, str]) -> str:
    return "UPDATE checkouts SET " + ", ".join(f"{k} = {v}" for k, v in values.items())


async def refused(engine: AsyncEngine, checkout_id: uuid.UUID, values: dict[str, str]) -> Any:
    """An UPDATE of the failed row the database must refuse; the row is left as it was."""
    before = await _row(engine, checkout_id)
    with pytest.raises(sa.exc.DBAPIError) as caught:
        await _run(engine, _update(values) + " WHERE id = :id", id=checkout_id)
    assert await _row(engine, checkout_id) == before
    error = caught.value.orig
    assert isinstance(error, psycopg.Error)
    return error


async def test_the_reopen_where_it_failed_is_accepted_and_changes_only_its_columns(
    engine: AsyncEngine,
) -> None:
    checkout_id = await failed_at_submit(engine)
    before = await _row(engine, checkout_id)
    assert await _run(engine, _update(REOPEN) + " WHERE id = :id", id=checkout_id) == 1
    after = await _row(engine, checkout_id)
    changed = {k for k in after if after[k] != before[k]}
    assert changed <= set(COLUMNS_CHANGING_ON_REOPEN) | set(COLUMNS_CHANGING_AFTER_FINISH)
    assert (after["state"], after["pending_step"], after["in_flight"]) == ("priced", "submit", True)
    assert after["step_started_at"] == before["step_started_at"]


@pytest.mark.parametrize("state", ["submitted", "canceled", "requires_action", "failed"])
async def test_a_failed_row_never_moves_where_the_graph_has_no_retry(
    engine: AsyncEngine, state: str
) -> None:
    checkout_id = await failed_at_submit(engine)
    error = await refused(engine, checkout_id, {**REOPEN, "state": f"'{state}'"})
    if state == "failed":  # not a move at all: the finished row's columns are frozen
        assert error.sqlstate == SQLSTATE_APPEND_ONLY
    else:
        assert error.sqlstate == SQLSTATE_ILLEGAL_TRANSITION
        assert f"illegal checkout transition failed -> {state}" in str(error)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"state": "'new'", "pending_step": "'create_cart'"}, "failed in priced at step submit"),
        ({"state": "'paid'", "pending_step": "'price'"}, "failed in priced at step submit"),
        ({"pending_step": "'price'"}, "not in priced at price"),
        ({"pending_step": "NULL"}, "failed in priced at step submit"),
        ({"in_flight": "false"}, "in flight"),
        ({"attempt": "attempt"}, "no attempt"),
        ({"recoveries": "recoveries"}, "crash counted"),
        ({"finished_at": "finished_at"}, "unfinished"),
        ({"lease_epoch": "lease_epoch"}, "new lease epoch"),
        ({"event_seq": "event_seq"}, "audit events"),
    ],
)
async def test_a_reopen_elsewhere_or_otherwise_is_refused(
    engine: AsyncEngine, change: dict[str, str], words: str
) -> None:
    checkout_id = await failed_at_submit(engine)
    error = await refused(engine, checkout_id, {**REOPEN, **change})
    assert error.sqlstate == SQLSTATE_APPEND_ONLY
    assert words in str(error)


@pytest.mark.parametrize(
    "column",
    sorted(
        set(CHANGED_VALUE) - set(COLUMNS_CHANGING_ON_REOPEN) - set(COLUMNS_CHANGING_AFTER_FINISH)
    ),
)
async def test_a_reopen_changes_nothing_else(engine: AsyncEngine, column: str) -> None:
    """The request, the Violet ids, the totals, the step's start (the settle window reads it)..."""
    checkout_id = await failed_at_submit(engine)
    error = await refused(engine, checkout_id, {**REOPEN, column: CHANGED_VALUE[column]})
    assert error.sqlstate == SQLSTATE_APPEND_ONLY
    assert f"UPDATE of {column} refused" in str(error)


async def test_a_failed_row_without_its_failure_in_the_trail_is_not_reopened(
    engine: AsyncEngine,
) -> None:
    checkout_id = await failed_at_submit(engine, with_failure=False)
    error = await refused(engine, checkout_id, REOPEN)
    assert error.sqlstate == SQLSTATE_APPEND_ONLY
    assert "has no failure in its audit trail" in str(error)


async def test_the_last_failure_decides_where_it_reopens(engine: AsyncEngine) -> None:
    """Reopened at submit, it failed again, at price this time (as if the submit's reconcile had
    found the cart needing a new price): now only `paid` at `price` is a legal reopen."""
    checkout_id = await failed_at_submit(engine)
    await _run(engine, _update(REOPEN) + " WHERE id = :id", id=checkout_id)
    await _run(
        engine,
        "UPDATE checkouts SET state = 'failed', event_seq = 5 WHERE id = :id",
        id=checkout_id,
    )
    await _run(
        engine,
        "INSERT INTO checkout_events (checkout_id, seq, kind, from_state, to_state, step) "
        "VALUES (:id, 5, 'transition', 'paid', 'failed', 'price')",
        id=checkout_id,
    )
    error = await refused(engine, checkout_id, {**REOPEN, "event_seq": "event_seq + 1"})
    assert "failed in paid at step price" in str(error)
    reopen_at_price = {
        **REOPEN,
        "state": "'paid'",
        "pending_step": "'price'",
        "event_seq": "event_seq + 1",
    }
    # failed -> paid is legal only because `paid` is where the last failure left from.
    assert await _run(engine, _update(reopen_at_price) + " WHERE id = :id", id=checkout_id) == 1
