"""A worker paused between its submit intent and its submit never sends that submit late.

The reconciler of another process treats an unanswered submit as absent once the step is older
than the settle window, and submits again; the paused worker, resumed, must not submit too.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg
import pytest

from orchestrator.api import Orchestrator
from tests.crash import procs, worker
from tests.crash.conftest import assert_exactly_once, summary_of
from tests.fixtures.db import libpq_url
from tests.fixtures.polling import eventually
from tests.fixtures.sandbox import HttpSandbox

pytestmark = pytest.mark.crash

LEASE_S = 3.0
TOTAL_TIMEOUT_S = 2.0
SETTLE_S = 1.0
LOCK_HELD_S = 4.0
SETTLE_WINDOW_S = 2 * TOTAL_TIMEOUT_S + SETTLE_S


async def _scalar(conn: psycopg.AsyncConnection, sql: str, *params: object) -> object:
    cursor = await conn.execute(sql, params)
    row = await cursor.fetchone()
    assert row is not None
    return row[0]


async def test_a_paused_worker_never_sends_a_second_submit(
    crash_env: dict[str, str],
    database_url: str,
    http_sandbox: HttpSandbox,
    observer: Orchestrator,
    tmp_path: Path,
) -> None:
    env = {
        **crash_env,
        "ORCHESTRATOR_LEASE_SECONDS": str(LEASE_S),
        "VIOLET_TOTAL_TIMEOUT": str(TOTAL_TIMEOUT_S),
        "ORCHESTRATOR_SUBMIT_SETTLE_SECONDS": str(SETTLE_S),
    }
    control = http_sandbox.control
    await control.add_fault("price", "latency", count=1, latency_ms=1500)
    child = procs.start_worker(env, tmp_path / "paused.log", [worker.request("paused-1")])
    await eventually(
        lambda: _called(http_sandbox, "price"), "the worker is in its price call", limit=60
    )

    # Another session holds the row while the price answer comes back: the worker's write of
    # the price outcome and the submit intent waits for the lock.
    url = libpq_url(database_url)
    async with (
        await psycopg.AsyncConnection.connect(url) as holder,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as watcher,
    ):
        locked_at = time.monotonic()
        await holder.execute(
            "SELECT id FROM checkouts WHERE app_order_id = %s FOR UPDATE", ("paused-1",)
        )

        async def write_waits() -> bool:
            waiting = await _scalar(
                watcher,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE %s",
                "%UPDATE checkouts SET%",  # the step write (query text is cut at 1 kB)
            )
            return bool(waiting)

        await eventually(write_waits, "the step write blocked on the row lock")
        child.pause()  # SIGSTOP while its write waits: it commits while the worker is frozen
        try:
            await asyncio.sleep(max(0.0, LOCK_HELD_S - (time.monotonic() - locked_at)))
            await holder.rollback()

            async def intent_committed_long_ago() -> bool:
                old = await _scalar(
                    watcher,
                    "SELECT pending_step = 'submit' AND in_flight AND lease_expires_at < now() "
                    "AND now() - step_started_at > %s * interval '1 second' "
                    "FROM checkouts WHERE app_order_id = %s",
                    SETTLE_WINDOW_S + 1.0,
                    "paused-1",
                )
                return bool(old)

            await eventually(intent_committed_long_ago, "the settle window passed", limit=60)
            recovery = procs.start_recovery(env, tmp_path / "recovery.log")
            assert recovery.wait() == 0, recovery.log()
            assert summary_of(recovery.log())["submitted"] == 1
        finally:
            child.resume()

    assert child.wait() == 3, child.log()  # its late write is refused: LeaseLost
    checkout = await observer.get("paused-1")
    assert checkout.state == "submitted" and checkout.violet_order_id is not None
    submits = await control.calls(op="submit", cart_id=checkout.violet_order_id)
    assert len(submits) == 1, (submits, child.log())
    assert "not sent" in child.log()
    await assert_exactly_once(observer, http_sandbox, {"paused-1": "submitted"})


async def _called(sandbox: HttpSandbox, op: str) -> bool:
    stats = await sandbox.control.stats()
    return int(stats["calls_by_op"].get(op, 0)) >= 1
