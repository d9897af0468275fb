"""Audit queries against real checkouts: lookups, filters, newest-first order, stats, and plans
that use an index rather than scanning the table."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import audit
from orchestrator.api import Orchestrator
from orchestrator.errors import CheckoutNotFound, InvalidRequest
from orchestrator.states import STATES
from tests.fixtures.orchestrator import DECLINED, INTENT, TOKEN, checkout_request


async def test_find_checkout_by_id_app_order_id_and_violet_order_id(orch: Orchestrator) -> None:
    done = await orch.start(checkout_request(payment=TOKEN))
    assert done.violet_order_id is not None
    for ref in (done.id, str(done.id), done.app_order_id, str(done.violet_order_id)):
        found = await audit.find_checkout(orch.engine, ref)
        assert found.id == done.id
    with pytest.raises(CheckoutNotFound):
        await audit.find_checkout(orch.engine, "no-such-order")


async def test_timeline_is_the_whole_history_in_order(orch: Orchestrator) -> None:
    done = await orch.start(checkout_request(payment=TOKEN))
    events = await audit.timeline(orch.engine, done.app_order_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].kind == "created"
    assert events[-1].to_state == "submitted"
    calls = [e for e in events if e.kind == "violet_call"]
    assert calls and all(e.http_status == 200 and e.http_path for e in calls)
    with pytest.raises(CheckoutNotFound):
        await audit.timeline(orch.engine, str(uuid.uuid4()))


async def test_list_filters_by_state_error_type_and_time(orch: Orchestrator) -> None:
    ok = await orch.start(checkout_request(payment=TOKEN))
    declined = await orch.start(checkout_request(payment=DECLINED))
    waiting = await orch.start(checkout_request(payment=INTENT))
    assert (ok.state, declined.state, waiting.state) == (
        "submitted",
        "failed",
        "awaiting_confirmation",
    )

    everything = await audit.list_checkouts(orch.engine)
    assert [c.id for c in everything] == [waiting.id, declined.id, ok.id]  # newest first
    assert [c.id for c in await audit.list_checkouts(orch.engine, limit=2)] == [
        waiting.id,
        declined.id,
    ]
    assert [c.id for c in await audit.list_checkouts(orch.engine, failed=True)] == [declined.id]
    submitted = await audit.list_checkouts(orch.engine, state="submitted")
    assert [c.id for c in submitted] == [ok.id]
    by_error = await audit.list_checkouts(orch.engine, error_type="card_declined")
    assert [c.id for c in by_error] == [declined.id]
    assert await audit.list_checkouts(orch.engine, error_type="insufficient_funds") == []

    assert waiting.created_at is not None and ok.created_at is not None
    since_waiting = await audit.list_checkouts(orch.engine, since=waiting.created_at)
    assert [c.id for c in since_waiting] == [waiting.id]
    before_waiting = await audit.list_checkouts(orch.engine, until=waiting.created_at)
    assert [c.id for c in before_waiting] == [declined.id, ok.id]
    future = datetime.now(UTC) + timedelta(days=1)
    assert await audit.list_checkouts(orch.engine, since=future) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"state": "bogus"}, "state"),
        ({"state": "submitted", "failed": True}, "state"),
        ({"limit": 0}, "limit"),
        ({"since": datetime(2024, 1, 1)}, "since"),
    ],
)
async def test_bad_filters_are_invalid_requests_naming_the_field(
    orch: Orchestrator, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        await audit.list_checkouts(orch.engine, **kwargs)
    assert [name for name, _ in raised.value.fields] == [field]


async def test_stats_counts_states_due_waiting_and_the_oldest(orch: Orchestrator) -> None:
    empty = await audit.stats(orch.engine)
    assert empty.total == 0 and empty.oldest_non_terminal is None
    assert set(empty.by_state) == set(STATES)

    registered = await orch.start(checkout_request(payment=TOKEN), run=False)
    await orch.start(checkout_request(payment=TOKEN))
    await orch.start(checkout_request(payment=DECLINED))
    await orch.start(checkout_request(payment=INTENT))

    result = await audit.stats(orch.engine)
    assert result.total == 4
    assert result.by_state["submitted"] == 1
    assert result.by_state["failed"] == 1
    assert result.by_state["awaiting_confirmation"] == 1
    assert result.by_state["new"] == 1
    assert result.non_terminal == 2
    assert result.due_now == 1  # the registered one; the waiting one is not due
    assert result.waiting_for_input == 1
    assert result.leased == 0
    assert result.oldest_non_terminal is not None
    assert result.oldest_non_terminal.id == registered.id
    document = result.to_json()
    assert document["oldest_non_terminal"]["app_order_id"] == registered.app_order_id
    assert document["at"].endswith("Z")


@pytest.fixture
def recorded_sql(orch: Orchestrator) -> Iterator[list[tuple[str, Any]]]:
    """Every statement sent on the orchestrator's engine, with its parameters."""
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        statements.append((sql, params))

    sync_engine = orch.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)


async def _plan(engine: AsyncEngine, sql: str, params: Any) -> str:
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SET enable_seqscan = off")
        result = await conn.exec_driver_sql("EXPLAIN " + sql, params)
        return "\n".join(str(row[0]) for row in result.all())


async def test_every_audit_query_can_use_an_index(
    orch: Orchestrator, recorded_sql: list[tuple[str, Any]]
) -> None:
    """With sequential scans priced out, no audit query may still need one on `checkouts`
    (the planner falls back to a Seq Scan only when no index can answer)."""
    await orch.start(checkout_request(payment=DECLINED))
    recorded_sql.clear()
    since = datetime.now(UTC) - timedelta(hours=1)
    await audit.list_checkouts(orch.engine)
    await audit.list_checkouts(orch.engine, state="failed")
    await audit.list_checkouts(orch.engine, since=since)
    await audit.list_checkouts(orch.engine, state="failed", since=since)
    await audit.list_checkouts(orch.engine, error_type="card_declined")
    before_stats = len(recorded_sql)
    await audit.stats(orch.engine)
    assert len(recorded_sql) == before_stats + 1  # stats is one statement, one round trip
    await audit.stats(orch.engine, exact_below=1)  # the estimating branch: a plan of its own
    queries = [(sql, params) for sql, params in recorded_sql if "checkouts" in sql]
    assert len(queries) == 7
    for sql, params in queries:
        plan = await _plan(orch.engine, sql, params)
        assert "Seq Scan on checkouts" not in plan, f"{sql}\n{plan}"


async def test_stats_estimate_finished_checkouts_of_a_large_table(
    orch: Orchestrator, engine: AsyncEngine
) -> None:
    for _ in range(3):
        await orch.start(checkout_request(payment=TOKEN))
    await orch.start(checkout_request(payment=INTENT))
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE checkouts")
    exact = await audit.stats(engine)
    assert exact.estimated == ()
    rough = await audit.stats(engine, exact_below=1)
    assert rough.estimated == ("submitted",)
    assert rough.by_state["submitted"] == exact.by_state["submitted"] == 3
    assert rough.by_state["awaiting_confirmation"] == 1  # non-terminal: always exact
    assert rough.to_json()["estimated"] == ["submitted"]
