"""The cost of a checkout, restated: what persisting a checkout adds to the machine's CPU and to
a lone checkout's latency, each beside the floor it cannot go under, measured in the same run.

    uv run --group bench python -m bench.cost [--quick]

CPU, at L = 20 ms and C = 64 (a: the bare 7-call flow, nothing persisted; b:
`Orchestrator.start()`; alternated and repeated): the client's and PostgreSQL's CPU per
checkout, b minus a. Each part's floor is the statements a checkout executes (every psycopg
execute while b runs, counted) times what one bare statement costs that part: a one-row
autocommitted `UPDATE`, sent by 64 tasks over a pool of 16 connections as b's are, measured
between the runs. Goal: <= 2.0 ms of machine CPU added per checkout.

Latency, at C = 1 and L = 0: b's mean minus a's, per step (7 a checkout), beside its floor: the
durable commits on b's critical path (the insert and every write awaited before the next call,
counted while b runs) times a bare durable commit (the same `UPDATE`, one at a time on one
connection), per step. Goal: within 0.15 ms of that floor.

Results: bench/results/cost[_quick].json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import make_url

from bench.common import (
    bench_settings,
    machine_info,
    postgres_cpu_s,
    process_cpu_s,
    save_results,
    scratch_database,
    table,
)
from bench.throughput import (
    DB_POOL,
    STEPS_PER_CHECKOUT,
    bare_checkout,
    orchestrated_checkout,
    run_closed_loop,
    violet_client,
)
from orchestrator.api import Orchestrator
from orchestrator.engine.recorder import Recorder
from orchestrator.sandbox import SandboxConfig, SandboxControl, SandboxServer
from orchestrator.store.repository import Repository

#: The machine CPU persisting may add per checkout (ms), and how far above the commit floor a
#: lone checkout's added latency per step may be (ms).
CPU_GOAL_MS = 2.0
LATENCY_GOAL_MS = 0.15
BARE_ROWS = 64
BARE_SQL = "UPDATE bare SET n = n + 1 WHERE id = %s"


@contextmanager
def counted(counts: Counter[str]) -> Iterator[None]:
    """Count every statement sent (`statements`) and every durable commit b awaits on its
    critical path (`commits`: the insert, and each write not left running behind a call)."""
    patched: list[tuple[type, str, Any]] = []

    def wrap(cls: type, name: str, label: Callable[[dict[str, Any]], str | None]) -> None:
        original = getattr(cls, name)
        patched.append((cls, name, original))

        def count(kwargs: dict[str, Any]) -> None:
            key = label(kwargs)
            if key is not None:
                counts[key] += 1

        if not asyncio.iscoroutinefunction(original):
            raise TypeError(f"{cls.__name__}.{name} is not a coroutine function: not counted")

        async def counted_async(*args: Any, **kwargs: Any) -> Any:
            count(kwargs)
            return await original(*args, **kwargs)

        setattr(cls, name, counted_async)

    wrap(psycopg.AsyncCursor, "execute", lambda _: "statements")
    wrap(psycopg.AsyncCursor, "executemany", lambda _: "statements")
    wrap(Repository, "insert", lambda _: "commits")
    wrap(Recorder, "write", lambda kw: None if kw.get("behind_of") else "commits")
    try:
        yield
    finally:
        for cls, name, original in patched:
            setattr(cls, name, original)


async def bare_statements(pool: AsyncConnectionPool, n: int, concurrency: int) -> dict[str, float]:
    """`n` bare statements from `concurrency` tasks over `pool`: client and PostgreSQL CPU, and
    wall time, per statement (us)."""
    tickets = iter(range(n))

    async def worker(row_id: int) -> None:
        for _ in tickets:
            async with pool.connection() as conn:
                await conn.execute(BARE_SQL, (row_id,))

    pg0, cpu0, wall0 = postgres_cpu_s(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(k % BARE_ROWS + 1) for k in range(concurrency)))
    return {
        "client_us": (time.process_time() - cpu0) * 1e6 / n,
        "pg_us": (postgres_cpu_s() - pg0) * 1e6 / n,
        "wall_us": (time.perf_counter() - wall0) * 1e6 / n,
    }


async def bare_commits(conn: psycopg.AsyncConnection[Any], n: int) -> float:
    """Mean wall time (ms) of one bare durable commit, one at a time."""
    t0 = time.perf_counter()
    for k in range(n):
        await conn.execute(BARE_SQL, (k % BARE_ROWS + 1,))
    return (time.perf_counter() - t0) * 1000 / n


async def flow_cpu(
    flow: Callable[[], Awaitable[bool]], n: int, sandbox_pid: int, counts: Counter[str]
) -> dict[str, float]:
    """One closed-loop run at C = 64: CPU per checkout by part (ms), statements per checkout."""
    before = Counter(counts)
    sandbox0, pg0 = process_cpu_s(sandbox_pid), postgres_cpu_s()
    watch, _, failures = await run_closed_loop(flow, n, 64)
    if failures:
        raise SystemExit(f"{failures} of {n} checkouts failed: the CPU per checkout would lie")
    return {
        "client_ms": watch.cpu * 1000 / n,
        "pg_ms": (postgres_cpu_s() - pg0) * 1000 / n,
        "sandbox_ms": (process_cpu_s(sandbox_pid) - sandbox0) * 1000 / n,
        "checkouts_per_s": n / watch.wall,
        "statements": (counts["statements"] - before["statements"]) / n,
    }


async def flow_latency(
    flow: Callable[[], Awaitable[bool]], n: int, counts: Counter[str]
) -> dict[str, float]:
    """One checkout at a time: mean latency (ms), durable commits awaited per checkout."""
    before = Counter(counts)
    _, lats, failures = await run_closed_loop(flow, n, 1)
    if failures:
        raise SystemExit(f"{failures} of {n} checkouts failed: the latency would lie")
    return {
        "mean_ms": statistics.fmean(lats),
        "commits": (counts["commits"] - before["commits"]) / n,
    }


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    n_cpu, n_lat = (600, 150) if args.quick else (2000, 500)
    repeats = 2 if args.quick else 3
    runs: dict[str, list[dict[str, float]]] = {
        k: [] for k in ("a_cpu", "b_cpu", "bare_cpu", "a_lat", "b_lat", "bare_lat")
    }
    counts: Counter[str] = Counter()
    with (
        SandboxServer(SandboxConfig(latency_ms=0.0)) as sandbox,
        scratch_database("bench_cost") as (_, db_url),
    ):
        control = SandboxControl(sandbox.control_url)
        client = violet_client(sandbox.base_url)
        orch = await Orchestrator(
            bench_settings(db_url, sandbox.base_url, db_pool_size=DB_POOL), client=client
        ).open()
        await client.login()
        libpq = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
        setup = await psycopg.AsyncConnection.connect(libpq, autocommit=True)
        await setup.execute("CREATE TABLE bare (id int PRIMARY KEY, n bigint NOT NULL)")
        await setup.execute(
            "INSERT INTO bare SELECT g, 0 FROM generate_series(1, %s) AS g", (BARE_ROWS,)
        )
        pool = AsyncConnectionPool(
            libpq, min_size=DB_POOL, max_size=DB_POOL, open=False, kwargs={"autocommit": True}
        )
        await pool.open(wait=True)
        flows: dict[str, Callable[[], Awaitable[bool]]] = {
            "a": lambda: bare_checkout(client),
            "b": lambda: orchestrated_checkout(orch),
        }
        try:
            with counted(counts):
                await control.configure(latency_ms=20.0)
                for flow in flows.values():
                    await run_closed_loop(flow, 128, 64)  # warm-up
                await bare_statements(pool, 1000, 64)
                for rep in range(repeats):
                    for who, flow in flows.items():
                        runs[f"{who}_cpu"].append(await flow_cpu(flow, n_cpu, sandbox.pid, counts))
                    runs["bare_cpu"].append(await bare_statements(pool, 20 * n_cpu, 64))
                    print(
                        f"cpu rep={rep}: "
                        + "  ".join(
                            f"{k} " + ", ".join(f"{f} {v:.3f}" for f, v in runs[k][-1].items())
                            for k in ("a_cpu", "b_cpu", "bare_cpu")
                        ),
                        flush=True,
                    )
                await control.configure(latency_ms=0.0)
                for flow in flows.values():
                    await run_closed_loop(flow, 50, 1)  # warm-up
                for rep in range(repeats):
                    for who, flow in flows.items():
                        runs[f"{who}_lat"].append(await flow_latency(flow, n_lat, counts))
                    runs["bare_lat"].append({"commit_ms": await bare_commits(setup, n_lat * 4)})
                    print(
                        f"latency rep={rep}: a {runs['a_lat'][-1]['mean_ms']:.2f} ms,"
                        f" b {runs['b_lat'][-1]['mean_ms']:.2f} ms"
                        f" ({runs['b_lat'][-1]['commits']:.2f} commits awaited),"
                        f" bare commit {runs['bare_lat'][-1]['commit_ms']:.3f} ms",
                        flush=True,
                    )
        finally:
            await pool.close()
            await setup.close()
            await orch.close()
            await client.aclose()
            await control.aclose()
    return report(runs, n_cpu, n_lat, repeats)


def report(
    runs: dict[str, list[dict[str, float]]], n_cpu: int, n_lat: int, repeats: int
) -> dict[str, Any]:
    med = {k: _median(v) for k, v in runs.items()}
    a, b, bare = med["a_cpu"], med["b_cpu"], med["bare_cpu"]
    statements = b["statements"]
    parts = {
        "client": (b["client_ms"] - a["client_ms"], statements * bare["client_us"] / 1000),
        "postgres": (b["pg_ms"] - a["pg_ms"], statements * bare["pg_us"] / 1000),
        "sandbox": (b["sandbox_ms"] - a["sandbox_ms"], 0.0),
    }
    added_total = sum(added for added, _ in parts.values())
    floor_total = sum(floor for _, floor in parts.values())
    cpu_rows = [[name, added, floor, added - floor] for name, (added, floor) in parts.items()] + [
        ["machine", added_total, floor_total, added_total - floor_total]
    ]
    print()
    print(
        f"CPU per checkout at L = 20 ms, C = 64 (medians of {repeats} runs of {n_cpu}):"
        f" a {a['checkouts_per_s']:.0f}/s, b {b['checkouts_per_s']:.0f}/s;"
        f" b sends {statements:.1f} statements a checkout; a bare statement costs"
        f" {bare['client_us']:.0f} us client + {bare['pg_us']:.0f} us PostgreSQL"
    )
    print(table(["added by persisting", "ms", "floor ms", "above floor ms"], cpu_rows))
    print(f"machine CPU added {added_total:.2f} ms a checkout (goal <= {CPU_GOAL_MS} ms)")

    la, lb = med["a_lat"], med["b_lat"]
    commit_ms = med["bare_lat"]["commit_ms"]
    added_step = (lb["mean_ms"] - la["mean_ms"]) / STEPS_PER_CHECKOUT
    floor_step = lb["commits"] * commit_ms / STEPS_PER_CHECKOUT
    print(
        f"\nC = 1, L = 0 (medians of {repeats} runs of {n_lat}): a {la['mean_ms']:.2f} ms,"
        f" b {lb['mean_ms']:.2f} ms a checkout; b awaits {lb['commits']:.1f} durable commits"
        f" on its path, a bare durable commit takes {commit_ms:.3f} ms.\n"
        f"added latency {added_step:.3f} ms a step, floor {floor_step:.3f} ms,"
        f" above it {added_step - floor_step:.3f} ms (goal <= {LATENCY_GOAL_MS} ms)"
    )
    return {
        "machine": machine_info(),
        "n_cpu": n_cpu,
        "n_latency": n_lat,
        "repeats": repeats,
        "runs": runs,
        "median": med,
        "cpu_ms_per_checkout": {
            name: {"added": added, "floor": floor} for name, (added, floor) in parts.items()
        },
        "machine_cpu_added_ms": added_total,
        "machine_cpu_floor_ms": floor_total,
        "latency_ms_per_step": {"added": added_step, "floor": floor_step},
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="600 / 150 checkouts, 2 repeats")
    args = parser.parse_args()
    save_results("cost", args.quick, asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
