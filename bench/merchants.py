"""Benchmark: draining a skewed backlog across rate-limited merchants, with and without budgets.

    uv run --group bench python -m bench.merchants [--quick] [--n N] [--scale S] [--procs 1,3]

N checkouts (2,000; --quick 400) over the sandbox's 20 shelf merchants, one merchant holding
half of them and the others sharing the rest, each registered without running (due now). Every
merchant's platform is a leaky bucket of 40 requests leaking 2 a second, with time scaled by S
(0.02: leaking 100 a second, Retry-After 50 times shorter; every ratio kept; the orchestrator's
backoff base and budget wait are scaled alike). Then `orchestrator recover --until-idle` drains
them, with 1 and with 3 processes, once with per-merchant budgets (the default) and once with
`ORCHESTRATOR_MERCHANT_BUDGETS=false` (the global throttle alone), each on a fresh database and
sandbox, in the same run; and once more with no store limit at all (budgets on), to show what
this machine drains the backlog in when nothing but its CPU holds it back.

Reported per run: the drain time against the floor the buckets set (the slowest merchant's calls
beyond its bucket's size, over its leak rate) and against the larger of that floor and the
no-limit drain, the share of platform calls answered 429 (the sandbox's bucket counts), and
when the last checkout of each small merchant finished, as a share of the run. Bars (budgets
on): drain <= 1.15 x floor, <= 2% of calls answered 429, the small merchants all done within
the first 20% of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

import psycopg

from bench import common
from bench.common import bench_settings, machine_info, markdown_table, save_results, table
from bench.recovery import recover_env, run_recovery
from orchestrator.api import Orchestrator
from orchestrator.sandbox import SandboxConfig, SandboxControl, SandboxServer
from orchestrator.sandbox.catalog import SHELF_MERCHANT_BASE, SHELF_SIZE, shelf_sku

SIZE, LEAK = 40, 2.0
#: A bucket no drain fills: the run then shows what this machine drains in with no store limit.
UNLIMITED = 1_000_000  # the sandbox's largest bucket; a drain here sends ~14,000 calls
MERCHANTS = [SHELF_MERCHANT_BASE + i for i in range(1, SHELF_SIZE + 1)]
BIG = MERCHANTS[0]


def plan(n: int) -> list[int]:
    """The merchant of each checkout: half the big one's, the rest shared by the others."""
    big = n // 2
    rest = n - big
    small = MERCHANTS[1:]
    return [BIG] * big + [small[i % len(small)] for i in range(rest)]


def request(merchant_id: int, i: int) -> dict[str, Any]:
    return {
        "app_order_id": common.order_id(f"m{merchant_id}"),
        "currency": "USD",
        "skus": [{"sku_id": shelf_sku(merchant_id), "quantity": 1, "merchant_id": merchant_id}],
        "customer": common.CUSTOMER,
        "shipping_address": common.ADDRESS,
        "payment": common.TOKEN_PAYMENT,
    }


async def seed(db_url: str, base_url: str, n: int) -> None:
    async with Orchestrator(bench_settings(db_url, base_url)) as orch:
        sem = asyncio.Semaphore(16)

        async def one(i: int, merchant_id: int) -> None:
            async with sem:
                await orch.start(request(merchant_id, i), run=False)

        await asyncio.gather(*(one(i, m) for i, m in enumerate(plan(n))))


async def sample_big_budget(
    dbname: str, stop: asyncio.Event, every_s: float = 0.25
) -> list[list[float]]:
    """The big merchant's budget while the drain runs, every `every_s`: [seconds, rate a
    second (0: unpaced), its calls, its 429s], to see how the pace moves against the store's."""
    series: list[list[float]] = []
    t0 = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(
        common.admin_dsn(dbname), autocommit=True
    ) as conn:
        while not stop.is_set():
            cur = await conn.execute(
                "SELECT coalesce(rate_per_s, 0), calls, rate_limited FROM violet_throttle"
                " WHERE key = %s",
                (f"merchant:{BIG}",),
            )
            row = await cur.fetchone()
            if row is not None:
                series.append([round(time.perf_counter() - t0, 2), *map(float, row)])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
    return series


def finish_times(dbname: str) -> tuple[datetime, dict[int, list[datetime]], dict[str, int]]:
    with psycopg.connect(common.admin_dsn(dbname)) as conn:
        rows = conn.execute(
            "SELECT (request->'skus'->0->>'merchant_id')::bigint, state, finished_at FROM checkouts"
        ).fetchall()
        now = conn.execute("SELECT now()").fetchone()
        paced = conn.execute(
            "SELECT key, rate_per_s, calls, rate_limited FROM violet_throttle "
            "WHERE rate_per_s IS NOT NULL ORDER BY key"
        ).fetchall()
        print("  paced budgets:", [(k, round(r, 1), c, n) for k, r, c, n in paced], flush=True)
    by_merchant: dict[int, list[datetime]] = defaultdict(list)
    states: dict[str, int] = defaultdict(int)
    for merchant_id, state, finished_at in rows:
        states[state] += 1
        if finished_at is not None:
            by_merchant[merchant_id].append(finished_at)
    assert now is not None
    return now[0], by_merchant, dict(states)


async def scenario(
    args: argparse.Namespace, procs: int, budgets: bool, size: int = SIZE
) -> dict[str, Any]:
    scale = args.scale
    with (
        SandboxServer(SandboxConfig(latency_ms=args.latency_ms)) as sandbox,
        common.scratch_database("bench_merchants") as (dbname, db_url),
    ):
        async with SandboxControl(sandbox.control_url) as control:
            await seed(db_url, sandbox.base_url, args.n)
            await control.configure_buckets(size=size, leak_per_s=LEAK, time_scale=scale)
            env = recover_env(db_url, sandbox.base_url)
            env.update(
                ORCHESTRATOR_MERCHANT_BUDGETS="true" if budgets else "false",
                ORCHESTRATOR_BACKOFF_BASE=f"{1.0 * scale:g}",
                ORCHESTRATOR_MERCHANT_BUDGET_WAIT=f"{args.budget_wait:g}",
            )
            with psycopg.connect(common.admin_dsn(dbname)) as conn:
                started_row = conn.execute("SELECT now()").fetchone()
            assert started_row is not None
            started = started_row[0]
            wall0 = time.perf_counter()
            stop = asyncio.Event()
            sampling = asyncio.create_task(sample_big_budget(dbname, stop))
            try:
                procs_out = await asyncio.to_thread(
                    run_recovery, procs, args.concurrency, args.batch, env
                )
            finally:
                stop.set()
            series = await sampling
            wall = time.perf_counter() - wall0
            buckets = await control.buckets()
        _, finished, states = finish_times(dbname)
    leak = LEAK / scale
    per_merchant = buckets["merchants"]
    admitted = {int(m): b["admitted"] for m, b in per_merchant.items()}
    refused = {int(m): b["rate_limited"] for m, b in per_merchant.items()}
    floor = max(max(0, calls - size) / leak for calls in admitted.values())
    last = {m: max(ts) for m, ts in finished.items()}
    drain = max((t - started).total_seconds() for t in last.values())
    small_done = [
        (last[m] - started).total_seconds() / drain if m in last else float("inf")
        for m in MERCHANTS[1:]
    ]
    platform_calls = sum(admitted.values()) + sum(refused.values())
    result = {
        "procs": procs,
        "merchant_budgets": budgets,
        "limited": size < UNLIMITED,
        "drain_s": drain,
        "wall_s": wall,
        "floor_s": floor,
        "drain_over_floor": drain / floor if floor else None,
        "platform_calls": platform_calls,
        "answered_429": sum(refused.values()),
        "share_429": sum(refused.values()) / platform_calls if platform_calls else 0.0,
        "small_merchants_done_at_max": max(small_done),
        "small_merchants_done_at_median": sorted(small_done)[len(small_done) // 2],
        "big_merchant_done_at": (last[BIG] - started).total_seconds() / drain
        if BIG in last
        else None,
        "calls_by_merchant": admitted,
        "big_budget_series": series,
        "answered_429_by_merchant": refused,
        "states": states,
        "exit_codes": [p["exit_code"] for p in procs_out],
        "stderr_tail": [p["stderr_tail"][-400:] for p in procs_out if p["exit_code"] != 0],
    }
    print(
        f"[{procs} proc, budgets {'on' if budgets else 'off'}, {_limits(result)}] drain"
        f" {drain:.1f} s, floor {floor:.1f} s ({result['drain_over_floor'] or 0:.2f}x), 429"
        f" {100 * result['share_429']:.2f}%"
        f", small merchants done by {100 * max(small_done):.0f}% of the run, states {states}",
        flush=True,
    )
    return result


def _limits(result: dict[str, Any]) -> str:
    return "buckets" if result["limited"] else "no limits"


def _budgets(result: dict[str, Any]) -> str:
    return "on" if result["merchant_budgets"] else "off (global only)"


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.merchants", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="400 checkouts, one process count")
    parser.add_argument("--n", type=int, default=None, help="checkouts (2000; --quick 400)")
    parser.add_argument("--scale", type=float, default=0.02, help="bucket time scale")
    parser.add_argument("--procs", default=None, help="process counts (1,3; --quick 1)")
    parser.add_argument("--concurrency", type=int, default=32, help="per recover process")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--budget-wait",
        type=float,
        default=None,
        help="ORCHESTRATOR_MERCHANT_BUDGET_WAIT of the recover processes, seconds (15 x scale)",
    )
    parser.add_argument("--latency-ms", type=float, default=5.0, help="sandbox latency per call")
    args = parser.parse_args()
    args.n = args.n or (400 if args.quick else 2000)
    if args.budget_wait is None:
        args.budget_wait = 15 * args.scale
    procs_list = [int(p) for p in (args.procs or ("1" if args.quick else "1,3")).split(",")]
    machine = machine_info()
    runs = []
    for procs in procs_list:
        for budgets in (True, False):
            runs.append(await scenario(args, procs, budgets))
        # The same backlog with no store limit: how fast this machine drains it at all.
        unlimited = await scenario(args, procs, True, UNLIMITED)
        for r in runs[-2:]:
            r["machine_drain_s"] = unlimited["drain_s"]
            r["drain_over_bound"] = r["drain_s"] / max(r["floor_s"], unlimited["drain_s"])
        runs.append(unlimited)
    headers = [
        "procs",
        "budgets",
        "store",
        "drain s",
        "floor s",
        "x floor",
        "x max(floor, no-limit drain)",
        "429 %",
        "small done by % of run",
        "big done by %",
    ]
    rows = [
        [
            r["procs"],
            _budgets(r),
            _limits(r),
            r["drain_s"],
            r["floor_s"],
            r["drain_over_floor"],
            r.get("drain_over_bound"),
            100 * r["share_429"],
            100 * r["small_merchants_done_at_max"],
            100 * (r["big_merchant_done_at"] or 0),
        ]
        for r in runs
    ]
    print(table(headers, rows))
    print(markdown_table(headers, rows))
    save_results(
        "merchants",
        args.quick,
        {
            "n": args.n,
            "scale": args.scale,
            "bucket": {"size": SIZE, "leak_per_s": LEAK, "scaled_leak_per_s": LEAK / args.scale},
            "concurrency": args.concurrency,
            "latency_ms": args.latency_ms,
            "machine": machine,
            "runs": runs,
            "pid": os.getpid(),
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
