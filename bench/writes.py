"""Cost of one durable step write: alone, grouped, and the floor of any durable commit.

    uv run --group bench python -m bench.writes [--quick]

Sequential, one connection, no Violet: what a step write costs the client (process CPU) and
PostgreSQL (CPU of every postgres process, exited backends included), per write, for

  floor     a bare one-row `UPDATE checkouts SET next_attempt_at = ...` in autocommit: the least
            any durable step write can cost on this machine (round trip + WAL flush)
  alone     `Repository.write` as the runner calls it (one statement: the row and 3 events,
            the step's cart summary in its transition), what every write costs when nothing
            else is writing
  grouped   `Repository._write_many` with 8 and with 32 writes per statement: what writes cost
            when the group committer finds them queued up (concurrency)

Contenders are interleaved and repeated; medians are reported, with ratios against `alone`
measured in the same run. Results: bench/results/writes[_quick].json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from bench.common import (
    machine_info,
    postgres_cpu_s,
    save_results,
    scratch_database,
    table,
)
from orchestrator.store import database
from orchestrator.store.records import CheckoutRow, Event
from orchestrator.store.repository import Repository

WORKER = "bench-writes"


def _events() -> list[Event]:
    return [
        Event(
            "violet_call",
            step="create_cart",
            attempt=1,
            http_method="POST",
            http_path="/checkout/cart",
            http_status=200,
            latency_ms=1.5,
            request_body={"skus": [{"sku_id": 1, "quantity": 1}]},
            response_body={"cart_id": 123, "status": "IN_PROGRESS", "total": 1000},
        ),
        Event(
            "transition",
            from_state="new",
            to_state="created",
            step="create_cart",
            attempt=1,
            detail={
                "cart": {"cart_id": 123, "status": "IN_PROGRESS", "priced": False, "total": 1000}
            },
        ),
        Event("step_started", step="apply_customer", attempt=1),
    ]


async def _rows(repo: Repository, n: int) -> list[CheckoutRow]:
    rows = []
    for _ in range(n):
        row = CheckoutRow.registered(
            app_order_id=f"bw-{uuid.uuid4().hex[:16]}",
            request={"app_order_id": "x", "skus": [{"sku_id": 1, "quantity": 1}]},
            payment_kind="token",
            currency="USD",
            first_step="create_cart",
            run=True,
        )
        inserted = await repo.insert(
            row, [Event("created")], worker=WORKER, lease_seconds=30, leased=True
        )
        assert inserted is not None
        rows.append(inserted)
    return rows


async def _measure(run: Any, n: int) -> dict[str, float]:
    pg0, cpu0, wall0 = postgres_cpu_s(), time.process_time(), time.perf_counter()
    await run()
    wall, cpu, pg = (
        time.perf_counter() - wall0,
        time.process_time() - cpu0,
        postgres_cpu_s() - pg0,
    )
    return {"client_us": cpu * 1e6 / n, "pg_us": pg * 1e6 / n, "wall_us": wall * 1e6 / n}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    n = 512 if args.quick else 2048
    repeats = 2 if args.quick else 3
    results: dict[str, list[dict[str, float]]] = {}
    with scratch_database("bench_writes") as (_, db_url):
        engine = database.create_engine(db_url, pool_size=1)
        libpq = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        pool = AsyncConnectionPool(
            libpq, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
        )
        await pool.open(wait=True)
        repo = Repository(engine, pool, write_slots=1)
        floor_conn = await psycopg.AsyncConnection.connect(libpq, autocommit=True)

        async def advance(row: CheckoutRow) -> None:
            """The outcome of create_cart plus the intent of the next step, as the runner writes."""
            row.state, row.step_no = "created", 1
            await repo.write(
                row,
                _events(),
                worker=WORKER,
                lease_seconds=30,
                keep_lease=True,
                start_step=True,
            )

        async def alone(rows: list[CheckoutRow]) -> None:
            for row in rows:
                await advance(row)

        def grouped(size: int) -> Any:
            async def run(rows: list[CheckoutRow]) -> None:
                for k in range(0, len(rows), size):
                    # Submitted together, they leave as one statement (one slot, all queued).
                    await asyncio.gather(*(advance(row) for row in rows[k : k + size]))

            return run

        async def floor(rows: list[CheckoutRow]) -> None:
            for row in rows:
                await floor_conn.execute(
                    "UPDATE checkouts SET next_attempt_at = now() + interval '30 s' WHERE id = %s",
                    (row.id,),
                )

        contenders: dict[str, Any] = {
            "floor": floor,
            "alone": alone,
            "grouped 8": grouped(8),
            "grouped 32": grouped(32),
        }
        for _ in range(repeats):
            for label, run in contenders.items():
                rows = await _rows(repo, n)
                # Each run starts from a vacuumed table: dead versions left by the previous
                # contender (and autovacuum firing mid-run) would otherwise be charged to it.
                await floor_conn.execute("VACUUM ANALYZE checkouts, checkout_events")
                figures = await _measure(lambda run=run, rows=rows: run(rows), n)
                results.setdefault(label, []).append(figures)
                print(
                    f"{label:>10}: client {figures['client_us']:6.0f} us, "
                    f"postgres {figures['pg_us']:6.0f} us, wall {figures['wall_us']:6.0f} us"
                )
        await floor_conn.close()
        await pool.close()
        await engine.dispose()

    summary = {
        label: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for label, runs in results.items()
    }
    base = summary["alone"]
    rows_out = [
        [
            label,
            s["client_us"],
            s["pg_us"],
            s["wall_us"],
            s["client_us"] / base["client_us"],
            s["pg_us"] / base["pg_us"],
        ]
        for label, s in summary.items()
    ]
    print()
    print(
        table(
            ["per write", "client us", "postgres us", "wall us", "client x alone", "pg x alone"],
            rows_out,
        )
    )
    return {
        "machine": machine_info(),
        "n": n,
        "repeats": repeats,
        "runs": results,
        "median": summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.writes", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="512 writes per run, 2 repeats")
    args = parser.parse_args()
    payload = asyncio.run(main_async(args))
    save_results("writes", args.quick, payload)


if __name__ == "__main__":
    main()
