"""Benchmark: the web console's queries at scale, beside a primary-key lookup in the same run.

    uv run --group bench python -m bench.console [--quick]

Seeds checkouts as bench.queries does (1,000,000; --quick: 100,000; no events: the console's
list, overview and filters read `checkouts` and `violet_throttle` alone; the timeline is
bench.queries' "audit trail"). Each query runs through the library (`orchestrator.audit`, what
a console page awaits), interleaved with the baseline lookup by id, and its p50/p99 are printed
with the ratio of its median to the baseline's; EXPLAIN shows which index serves it. Every
seeded checkout has one bag of merchant 10003, so "merchant (absent)" is the worst case of the
merchant filter, which no index serves: it walks the newest-first index to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench import common
from bench.common import machine_info, markdown_table, median, percentile, save_results, table
from bench.queries import checkout_uuid, seed
from orchestrator import audit
from orchestrator.store import database

Query = Callable[[Any], Awaitable[Any]]


def queries(window: audit.SettleWindow) -> dict[str, Query]:
    day = datetime.now(UTC) - timedelta(hours=24)
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    return {
        "list, first page (50)": lambda e: audit.list_checkouts(e, limit=51),
        "list, a later page by cursor": lambda e: audit.list_checkouts(
            e, after=audit.Cursor(two_hours_ago, checkout_uuid(1)), limit=51
        ),
        "list state=failed": lambda e: audit.list_checkouts(e, state="failed", limit=51),
        "list error_type=CARD_DECLINED": lambda e: audit.list_checkouts(
            e, error_type="CARD_DECLINED", limit=51
        ),
        "list waiting for input": lambda e: audit.list_checkouts(e, waiting=True, limit=51),
        "list unfinished": lambda e: audit.list_checkouts(e, unfinished=True, limit=51),
        "list stuck in flight": lambda e: audit.list_checkouts(e, stuck=window, limit=51),
        "list created in the last 24 h": lambda e: audit.list_checkouts(e, since=day, limit=51),
        "list merchant 10003 (every row)": lambda e: audit.list_checkouts(
            e, merchant_id=10003, limit=51
        ),
        "list merchant (absent): no index": lambda e: audit.list_checkouts(
            e, merchant_id=777, limit=51
        ),
        "list merchant (absent), last 24 h": lambda e: audit.list_checkouts(
            e, merchant_id=777, since=day, limit=51
        ),
        "failures per type, 24 h by hour": lambda e: audit.failures_over_time(
            e, since=day, bucket_seconds=3600
        ),
        "failures per type, 7 d by 6 h": lambda e: audit.failures_over_time(
            e, since=datetime.now(UTC) - timedelta(days=7), bucket_seconds=6 * 3600
        ),
        "429 pauses": lambda e: audit.throttle_pauses(e),
    }


async def timings(db_url: str, samples: int) -> dict[str, list[float]]:
    engine = database.create_engine(db_url)
    window = audit.SettleWindow.of(60.0, 10.0)
    contenders: dict[str, Query] = {
        "baseline: find_checkout by id": lambda e: audit.find_checkout(e, checkout_uuid(7)),
        **queries(window),
    }
    out: dict[str, list[float]] = {name: [] for name in contenders}
    try:
        for query in contenders.values():  # warm-up: connections, plans, caches
            await query(engine)
        for _ in range(samples):  # interleaved: a, b, c, a, b, c, ...
            for name, query in contenders.items():
                t0 = time.perf_counter()
                await query(engine)
                out[name].append((time.perf_counter() - t0) * 1000.0)
    finally:
        await engine.dispose()
    return out


def plans(dbname: str) -> dict[str, str]:
    """EXPLAIN of each query as it reaches the database (recorded through a psycopg cursor)."""
    recorded: list[tuple[str, Any]] = []

    class Recorder:
        async def rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
            recorded.append((sql, params))
            return []

    async def collect() -> dict[str, tuple[str, Any]]:
        found: dict[str, tuple[str, Any]] = {}
        for name, query in queries(audit.SettleWindow.of(60.0, 10.0)).items():
            recorded.clear()
            await query(Recorder())
            found[name] = recorded[-1]
        return found

    statements = asyncio.run(collect())
    out: dict[str, str] = {}
    with psycopg.connect(common.admin_dsn(dbname), autocommit=True) as conn:
        for name, (sql, params) in statements.items():
            rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", params).fetchall()
            out[name] = "\n".join(str(r[0]) for r in rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k checkouts")
    parser.add_argument("--checkouts", type=int, default=0)
    parser.add_argument("--samples", type=int, default=0, help="per query (default 30/100)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n = args.checkouts or (100_000 if args.quick else 1_000_000)
    samples = args.samples or (30 if args.quick else 100)
    info = machine_info()
    with common.scratch_database("bench_console") as (dbname, db_url):
        seed_times = seed(dbname, n, 0)
        with psycopg.connect(common.admin_dsn(dbname), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO violet_throttle (key, blocked_until) VALUES "
                "('global', now() + interval '1 minute'), ('merchant:10003', now())"
            )
        measured = asyncio.run(timings(db_url, samples))
        explained = plans(dbname)
    base = median(measured["baseline: find_checkout by id"])
    rows = [
        [
            name,
            len(values),
            percentile(values, 50),
            percentile(values, 99),
            median(values) / base if base else 0.0,
        ]
        for name, values in measured.items()
    ]
    headers = ["query", "samples", "p50 ms", "p99 ms", "x baseline (median)"]
    print(table(headers, rows, digits=3))
    print()
    for name, plan in explained.items():
        print(f"--- EXPLAIN {name}\n{plan}\n")
    save_results(
        "console",
        args.quick,
        {
            "machine": info,
            "checkouts": n,
            "seed": seed_times,
            "results": [dict(zip(headers, r, strict=True)) for r in rows],
            "plans": explained,
            "markdown": markdown_table(headers, rows, digits=3),
        },
    )


if __name__ == "__main__":
    main()
