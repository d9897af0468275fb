"""The cost of a checkout, restated: what persisting a checkout adds to the machine's CPU and to
a lone checkout's latency, each beside the floor it cannot go under, measured in the same run.

    uv run --group bench python -m bench.cost [--quick]

Contenders, alternated and repeated: a, the bare 7-call flow, nothing persisted; b,
`Orchestrator.start()`; b0, the same with the merchants' budgets as they were before
migration 0017 (a statement for every turn, on a logged table), to show in the same run what
that change buys; and, for the CPU only, bt: b with the database's triggers off (the tripwires
and the guards), to price them where they run.

CPU, at L = 20 ms and C = 64: the client's and PostgreSQL's CPU per checkout, b minus a. Each
part's floor is the statements a checkout executes (every psycopg execute while b runs,
counted) times what one bare statement costs that part: a one-row autocommitted `UPDATE`, sent
by 64 tasks over a pool of 16 connections as b's are, measured between the runs. Goal: <= 2.0 ms
of machine CPU added per checkout.

Latency, at C = 1 and L = 0: b's mean minus a's, per step (7 a checkout), beside its floor: the
durable commits on b's critical path (the insert and every write awaited before the next call,
counted while b runs) times a bare durable commit (the same `UPDATE`, one at a time on one
connection), plus the budget statements on the path (counted) times the same `UPDATE` on an
unlogged table, per step. Goal: within 0.15 ms of that floor.

Results: bench/results/cost[_quick].json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sized
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
from orchestrator.store import budgets
from orchestrator.store.budgets import MerchantBudgets
from orchestrator.store.repository import Repository

#: The machine CPU persisting may add per checkout (ms), and how far above the commit floor a
#: lone checkout's added latency per step may be (ms).
CPU_GOAL_MS = 2.0
LATENCY_GOAL_MS = 0.15
BARE_ROWS = 64
CONTENDERS = ("a", "b", "b0")
#: bt: b with the database's triggers (tripwires, guards) off, to price them in place (CPU only).
CPU_CONTENDERS = (*CONTENDERS, "bt")
BARE_SQL = "UPDATE bare SET n = n + 1 WHERE id = %s"
BARE_UNLOGGED_SQL = "UPDATE bare_unlogged SET n = n + 1 WHERE id = %s"


@contextmanager
def counted(counts: Counter[str]) -> Iterator[None]:
    """Count every statement sent (`statements`), every durable commit b awaits on its critical
    path (`commits`: the insert, and each write not left running behind a call), and every
    turn taken on a merchant's budget before a call (`takes`: unlogged, migration 0017)."""
    patched: list[tuple[type, str, Any]] = []

    def wrap(cls: type, name: str, label: str, many: Callable[[Any], int] | None = None) -> None:
        original = getattr(cls, name)
        if not asyncio.iscoroutinefunction(original):
            raise TypeError(f"{cls.__name__}.{name} is not a coroutine function: not counted")
        patched.append((cls, name, original))

        async def counted_async(*args: Any, **kwargs: Any) -> Any:
            if not (name == "write" and kwargs.get("behind_of")):  # a write behind a call
                counts[label] += (
                    many(args[2] if len(args) > 2 else kwargs["params_seq"]) if many else 1
                )
            return await original(*args, **kwargs)

        setattr(cls, name, counted_async)

    original_execute = psycopg.AsyncCursor.execute

    async def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        counts["statements"] += 1
        counts["take statements"] += query == budgets._TAKE_SQL
        return await original_execute(self, query, *args, **kwargs)

    patched.append((psycopg.AsyncCursor, "execute", original_execute))
    psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]
    wrap(psycopg.AsyncCursor, "executemany", "statements", many=_sized)
    wrap(Repository, "insert", "commits")
    wrap(Recorder, "write", "commits")
    wrap(MerchantBudgets, "take", "takes")
    try:
        yield
    finally:
        for cls, name, original in patched:
            setattr(cls, name, original)


def _sized(params_seq: Any) -> int:
    """One statement per parameter set; an iterator would be used up by counting it."""
    if not isinstance(params_seq, Sized):
        raise TypeError("executemany with an iterator: its statements cannot be counted")
    return len(params_seq)


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


async def bare_commits(conn: psycopg.AsyncConnection[Any], n: int, sql: str = BARE_SQL) -> float:
    """Mean wall time (ms) of one bare autocommitted statement, one at a time: a durable commit,
    or with BARE_UNLOGGED_SQL one that waits for no WAL flush (a budget take's floor)."""
    t0 = time.perf_counter()
    for k in range(n):
        await conn.execute(sql, (k % BARE_ROWS + 1,))
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
        "takes": (counts["takes"] - before["takes"]) / n,
        "take_statements": (counts["take statements"] - before["take statements"]) / n,
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
        "takes": (counts["takes"] - before["takes"]) / n,
        "take_statements": (counts["take statements"] - before["take statements"]) / n,
    }


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    n_cpu, n_lat = (600, 150) if args.quick else (2000, 500)
    repeats = 2 if args.quick else 3
    runs: dict[str, list[dict[str, float]]] = {
        f"{who}_{part}": [] for who in (*CPU_CONTENDERS, "bare") for part in ("cpu", "lat")
    }
    counts: Counter[str] = Counter()
    with (
        SandboxServer(SandboxConfig(latency_ms=0.0)) as sandbox,
        scratch_database("bench_cost") as (_, db_url),
    ):
        control = SandboxControl(sandbox.control_url)
        client = violet_client(sandbox.base_url)
        settings = bench_settings(db_url, sandbox.base_url, db_pool_size=DB_POOL)
        orch = await Orchestrator(settings, client=client).open()
        before = await Orchestrator(settings, client=client).open()
        # b0: a statement for every turn (no trust in a budget seen unpaced), as before.
        before.worker.runner.budgets = MerchantBudgets(before.repo)
        await client.login()
        libpq = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
        setup = await psycopg.AsyncConnection.connect(libpq, autocommit=True)
        await setup.execute("CREATE TABLE bare (id int PRIMARY KEY, n bigint NOT NULL)")
        await setup.execute("CREATE UNLOGGED TABLE bare_unlogged (LIKE bare INCLUDING ALL)")
        for table_name in ("bare", "bare_unlogged"):
            await setup.execute(
                f"INSERT INTO {table_name} SELECT g, 0 FROM generate_series(1, %s) AS g",
                (BARE_ROWS,),
            )
        pool = AsyncConnectionPool(
            libpq, min_size=DB_POOL, max_size=DB_POOL, open=False, kwargs={"autocommit": True}
        )
        await pool.open(wait=True)
        flows: dict[str, Callable[[], Awaitable[bool]]] = {
            "a": lambda: bare_checkout(client),
            "b": lambda: orchestrated_checkout(orch),
            "b0": lambda: orchestrated_checkout(before),
            "bt": lambda: orchestrated_checkout(orch),
        }
        triggered = [
            str(row[0])
            for row in await (
                await setup.execute(
                    "SELECT DISTINCT tgrelid::regclass FROM pg_trigger WHERE NOT tgisinternal"
                )
            ).fetchall()
        ]

        async def triggers(state: str) -> None:
            for name in triggered:
                await setup.execute(f"ALTER TABLE {name} {state} TRIGGER USER")

        async def measure(who: str, part: str, n: int) -> None:
            if who == "b0":  # and on a logged table, as before migration 0017
                await setup.execute("ALTER TABLE violet_throttle SET LOGGED")
            if who == "bt":
                await triggers("DISABLE")
            try:
                if part == "cpu":
                    figures = await flow_cpu(flows[who], n, sandbox.pid, counts)
                else:
                    figures = await flow_latency(flows[who], n, counts)
            finally:
                if who == "b0":
                    await setup.execute("ALTER TABLE violet_throttle SET UNLOGGED")
                if who == "bt":
                    await triggers("ENABLE")
            runs[f"{who}_{part}"].append(figures)
            print(f"{part} {who}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))

        try:
            with counted(counts):
                await control.configure(latency_ms=20.0)
                for flow in flows.values():
                    await run_closed_loop(flow, 128, 64)  # warm-up
                await bare_statements(pool, 1000, 64)
                for _ in range(repeats):
                    for who in CPU_CONTENDERS:
                        await measure(who, "cpu", n_cpu)
                    runs["bare_cpu"].append(await bare_statements(pool, 20 * n_cpu, 64))
                    print("cpu bare: " + str(runs["bare_cpu"][-1]), flush=True)
                await control.configure(latency_ms=0.0)
                for flow in flows.values():
                    await run_closed_loop(flow, 50, 1)  # warm-up
                for _ in range(repeats):
                    for who in CONTENDERS:
                        await measure(who, "lat", n_lat)
                    runs["bare_lat"].append(
                        {
                            "commit_ms": await bare_commits(setup, n_lat * 4),
                            "unlogged_ms": await bare_commits(setup, n_lat * 4, BARE_UNLOGGED_SQL),
                        }
                    )
                    print("lat bare: " + str(runs["bare_lat"][-1]), flush=True)
            wrote = await written_rows(setup)
        finally:
            await pool.close()
            await setup.close()
            await before.close()
            await orch.close()
            await client.aclose()
            await control.aclose()
    return report(runs, n_cpu, n_lat, repeats, wrote)


async def written_rows(conn: psycopg.AsyncConnection[Any]) -> dict[str, float]:
    """The rows a submitted checkout wrote, from what the runs left: its row (inserted,
    then updated once per write: `version`), its audit events and its changes for the feed."""
    cur = await conn.execute(
        """
        SELECT 1 + avg(c.version)::float8,
               (SELECT count(*) FROM checkout_events)::float8 / count(*),
               (SELECT count(*) FROM checkout_changes)::float8 / count(*)
        FROM checkouts c WHERE c.state = 'submitted'
        """
    )
    version, events, changes = await cur.fetchone() or (0.0, 0.0, 0.0)
    return {"row_writes": version, "events": events, "changes": changes}


def _cpu_parts(
    a: dict[str, float], b: dict[str, float], bare: dict[str, float]
) -> dict[str, tuple[float, float]]:
    """Per part: (CPU b adds over a, ms a checkout; its floor)."""
    statements = b["statements"]
    parts = {
        "client": (b["client_ms"] - a["client_ms"], statements * bare["client_us"] / 1000),
        "postgres": (b["pg_ms"] - a["pg_ms"], statements * bare["pg_us"] / 1000),
        "sandbox": (b["sandbox_ms"] - a["sandbox_ms"], 0.0),
    }
    parts["machine"] = (
        sum(added for added, _ in parts.values()),
        sum(floor for _, floor in parts.values()),
    )
    return parts


def report(
    runs: dict[str, list[dict[str, float]]],
    n_cpu: int,
    n_lat: int,
    repeats: int,
    wrote: dict[str, float],
) -> dict[str, Any]:
    med = {k: _median(v) for k, v in runs.items() if v}
    a, bare = med["a_cpu"], med["bare_cpu"]
    cpu = {who: _cpu_parts(a, med[f"{who}_cpu"], bare) for who in ("b", "b0")}
    print()
    print(
        f"CPU per checkout at L = 20 ms, C = 64 (medians of {repeats} runs of {n_cpu}):"
        f" a {a['checkouts_per_s']:.0f}/s, b {med['b_cpu']['checkouts_per_s']:.0f}/s,"
        f" b0 {med['b0_cpu']['checkouts_per_s']:.0f}/s; statements a checkout: b"
        f" {med['b_cpu']['statements']:.2f} ({med['b_cpu']['take_statements']:.2f} budget takes),"
        f" b0 {med['b0_cpu']['statements']:.2f} ({med['b0_cpu']['take_statements']:.2f});"
        f" a bare statement costs {bare['client_us']:.0f} us client + {bare['pg_us']:.0f} us"
        " PostgreSQL"
    )
    rows = [
        [name, *cpu["b"][name], cpu["b"][name][0] - cpu["b"][name][1], cpu["b0"][name][0]]
        for name in cpu["b"]
    ]
    print(table(["added by persisting", "b ms", "floor ms", "above floor ms", "b0 ms"], rows))
    machine, machine_floor = cpu["b"]["machine"]
    print(f"machine CPU added {machine:.2f} ms a checkout (goal <= {CPU_GOAL_MS} ms)")
    bt = med["bt_cpu"]
    triggers_pg_ms = med["b_cpu"]["pg_ms"] - bt["pg_ms"]
    written = wrote["row_writes"] + wrote["events"] + wrote["changes"]
    print(
        f"of PostgreSQL's {med['b_cpu']['pg_ms']:.2f} ms a checkout, the triggers (b - bt) take"
        f" {triggers_pg_ms:.2f} ms; a checkout writes {written:.1f} rows (its row"
        f" {wrote['row_writes']:.1f} times, {wrote['events']:.1f} audit events,"
        f" {wrote['changes']:.1f} changes): {med['b_cpu']['pg_ms'] * 1000 / written:.0f} us of"
        f" PostgreSQL CPU a row with the triggers, {bt['pg_ms'] * 1000 / written:.0f} without"
    )

    la, lb, lb0 = med["a_lat"], med["b_lat"], med["b0_lat"]
    commit_ms, unlogged_ms = med["bare_lat"]["commit_ms"], med["bare_lat"]["unlogged_ms"]

    def per_step(flow: dict[str, float]) -> tuple[float, float]:
        added = (flow["mean_ms"] - la["mean_ms"]) / STEPS_PER_CHECKOUT
        floor = (flow["commits"] * commit_ms + flow["take_statements"] * unlogged_ms) / (
            STEPS_PER_CHECKOUT
        )
        return added, floor

    (added_b, floor_b), (added_b0, floor_b0) = per_step(lb), per_step(lb0)
    print(
        f"\nC = 1, L = 0 (medians of {repeats} runs of {n_lat}): a {la['mean_ms']:.2f} ms,"
        f" b {lb['mean_ms']:.2f}, b0 {lb0['mean_ms']:.2f} ms a checkout; on b's path"
        f" {lb['commits']:.1f} durable commits and {lb['take_statements']:.1f} budget"
        f" statements (b0: {lb0['take_statements']:.1f}); a bare durable commit"
        f" {commit_ms:.3f} ms, a bare unlogged one {unlogged_ms:.3f} ms.\n"
        f"added latency a step: b {added_b:.3f} ms, floor {floor_b:.3f}, above it"
        f" {added_b - floor_b:.3f} ms (goal <= {LATENCY_GOAL_MS}); b0 {added_b0:.3f} ms"
    )
    return {
        "machine": machine_info(),
        "n_cpu": n_cpu,
        "n_latency": n_lat,
        "repeats": repeats,
        "runs": runs,
        "median": med,
        "cpu_ms_per_checkout": {
            who: {name: {"added": ad, "floor": fl} for name, (ad, fl) in parts.items()}
            for who, parts in cpu.items()
        },
        "machine_cpu_added_ms": machine,
        "rows_written_per_checkout": wrote,
        "triggers_pg_ms": triggers_pg_ms,
        "machine_cpu_floor_ms": machine_floor,
        "latency_ms_per_step": {
            "b": {"added": added_b, "floor": floor_b},
            "b0": {"added": added_b0, "floor": floor_b0},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="600 / 150 checkouts, 2 repeats")
    args = parser.parse_args()
    save_results("cost", args.quick, asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
