"""The console's queries against the indexes: with sequential scans priced out, every list
filter, the failure plot and the 429 pauses are served by an index, but the merchant filter,
which has none (docs/console.md says what it costs). A Seq Scan left in a plan means no index
could answer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import audit
from orchestrator.api import Orchestrator
from orchestrator.engine.runner import Runner
from tests.fixtures.orchestrator import DECLINED, TOKEN, checkout_request


@pytest.fixture
def recorded_sql(orch: Orchestrator) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        statements.append((sql, params))

    event.listen(orch.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(orch.engine.sync_engine, "before_cursor_execute", record)


async def _plan(engine: AsyncEngine, sql: str, params: Any) -> str:
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SET enable_seqscan = off")
        result = await conn.exec_driver_sql("EXPLAIN " + sql, params)
        return "\n".join(str(row[0]) for row in result.all())


async def test_every_console_query_but_the_merchant_filter_uses_an_index(
    orch: Orchestrator, recorded_sql: list[tuple[str, Any]]
) -> None:
    first = await orch.start(checkout_request(payment=DECLINED))
    await orch.start(checkout_request(payment=TOKEN), run=False)
    window = audit.SettleWindow.of(5.0, 0.3)
    since = datetime.now(UTC) - timedelta(hours=1)
    after = audit.Cursor.after(first)
    recorded_sql.clear()
    for filters in (
        {"waiting": True},
        {"stuck": window},
        {"unfinished": True},
        {"after": after},
        {"state": "failed", "after": after},
        {"since": since, "until": datetime.now(UTC)},
        {"error_type": "card_declined", "after": after},
        {"unfinished": True, "stuck": window, "since": since},
    ):
        await audit.list_checkouts(orch.engine, **filters)
    await audit.failures_over_time(orch.engine, since=since, bucket_seconds=3600)
    await audit.throttle_pauses(orch.engine)
    queries = list(recorded_sql)
    assert len(queries) == 10
    for sql, params in queries:
        plan = await _plan(orch.engine, sql, params)
        assert "Seq Scan on checkouts" not in plan, f"{sql}\n{plan}"

    recorded_sql.clear()
    await audit.list_checkouts(orch.engine, merchant_id=10003)
    (sql, params), *_ = list(recorded_sql)
    # No index has merchants: the filter reads the rows the newest-first index walks.
    plan = await _plan(orch.engine, sql, params)
    assert "Index Scan using ix_checkouts_created_at" in plan
    assert "Filter: (bags @>" in plan


async def test_the_stuck_window_is_the_runners(orch: Orchestrator) -> None:
    """`audit.SettleWindow.of(settings)` is the runner's settle window, not a copy that drifts."""
    runner: Runner = orch.runner
    window = audit.SettleWindow.of(orch.settings.total_timeout, orch.settings.submit_settle_seconds)
    assert window.send == runner.send_window
    assert window.send + window.settle == runner.settle_window
