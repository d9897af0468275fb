"""Benchmark 3: recovery at scale, one and three `recover --until-idle` processes.

    uv run --group bench python -m bench.recovery [--quick]

Seeding (not timed): N checkouts (10,000; --quick 1,000) are started through the orchestrator
against the sandbox at 0 ms latency, and each is interrupted at a chosen point of a chosen step,
by a bench-only `CrashPoints` that raises instead of SIGKILL-ing the process, so the seeding
process survives while the checkout is left exactly as a dead worker leaves it: lease held,
intent committed, and for `after_intent_commit` / `after_call` the step in flight with an
unknown outcome. The mix cycles over the 6 steps x 3 points, plus 1 in 19 registered with
`run=False` (never started). Leases are short (2 s) and expire before recovery starts.
Then the sandbox's latency is set to 100 ms and `python -m orchestrator recover --until-idle
--concurrency C --json` runs as a subprocess (1 process, then, after a fresh seeding, 3 at
once). Reported: time to idle, checkouts/s, peak RSS per process (wait4 ru_maxrss), final
states, and the sandbox's duplicate submits (must be 0). Bars: < 60 s, < 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from bench import common
from bench.common import (
    bench_settings,
    checkout_request,
    machine_info,
    markdown_table,
    postgres_cpu_s,
    process_cpu_s,
    save_results,
    scratch_database,
    table,
)
from bench.throughput import run_closed_loop, violet_client
from orchestrator.api import Orchestrator
from orchestrator.engine.crashpoints import CrashPoints
from orchestrator.sandbox import SANDBOX_CREDENTIALS, SandboxConfig, SandboxControl, SandboxServer
from orchestrator.states import TERMINAL_STATES

log = logging.getLogger("bench.recovery")

STEPS = ("create_cart", "apply_customer", "apply_shipping", "apply_payment", "price", "submit")
POINTS = ("after_intent_commit", "after_call", "after_outcome_commit")
PLAN = [f"{p}:{s}" for s in STEPS for p in POINTS] + ["never_started"]

_crash_at: contextvars.ContextVar[str | None] = contextvars.ContextVar("crash_at", default=None)


class SimulatedCrash(BaseException):
    """Unwinds one checkout's task as if its worker had died (nothing catches BaseException)."""


class TaskCrashPoints(CrashPoints):
    """Crash points armed per asyncio task (a contextvar), raising instead of killing."""

    def __init__(self) -> None:
        super().__init__("", enabled=False)
        self.armed = True

    def hit(self, point: str) -> None:
        if _crash_at.get() == point:
            raise SimulatedCrash(point)


async def seed(db_url: str, base_url: str, n: int, concurrency: int) -> dict[str, int]:
    settings = bench_settings(db_url, base_url, lease_seconds=2.0)
    client = violet_client(base_url)
    orch = await Orchestrator(settings, client=client, crash=TaskCrashPoints()).open()
    await client.login()
    counter = iter(range(n))
    made: dict[str, int] = {}

    async def one() -> bool:
        i = next(counter, n)
        where = PLAN[i % len(PLAN)]
        made[where] = made.get(where, 0) + 1
        request = checkout_request("rec")
        if where == "never_started":
            await orch.start(request, run=False)
            return True
        token = _crash_at.set(where)
        try:
            await orch.start(request)
        except SimulatedCrash:
            return True
        finally:
            _crash_at.reset(token)
        return False  # ran to the end: the crash point was never reached

    _, _, finished = await run_closed_loop(one, n, concurrency)
    # Forget the leases in memory without releasing them in the database (a dead worker).
    orch.leases._held.clear()
    await orch.close()
    await client.aclose()
    made["ran_to_completion"] = finished
    return made


def states(dbname: str) -> dict[str, int]:
    with psycopg.connect(common.admin_dsn(dbname)) as conn:
        rows = conn.execute("SELECT state, count(*) FROM checkouts GROUP BY state").fetchall()
    return {str(s): int(c) for s, c in rows}


def in_flight(dbname: str) -> int:
    with psycopg.connect(common.admin_dsn(dbname)) as conn:
        row = conn.execute("SELECT count(*) FROM checkouts WHERE in_flight").fetchone()
    return int(row[0]) if row else 0


def recover_env(db_url: str, base_url: str) -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env.update(
        ORCHESTRATOR_DATABASE_URL=db_url,
        VIOLET_BASE_URL=base_url,
        VIOLET_APP_ID=str(SANDBOX_CREDENTIALS["app_id"]),
        VIOLET_APP_SECRET=str(SANDBOX_CREDENTIALS["app_secret"]),
        VIOLET_USERNAME=str(SANDBOX_CREDENTIALS["username"]),
        VIOLET_PASSWORD=str(SANDBOX_CREDENTIALS["password"]),
        # A submit whose outcome is unknown waits its start + total timeout + settle time before
        # recovery may submit again (2 x total timeout + settle); at L = 100 ms no call needs 2 s.
        ORCHESTRATOR_SUBMIT_SETTLE_SECONDS="1",
        VIOLET_TOTAL_TIMEOUT="2",
    )
    return env


def run_recovery(
    procs: int,
    concurrency: int,
    batch: int,
    env: dict[str, str],
    pyspy: str = "",
) -> list[dict[str, Any]]:
    """Start `procs` recover processes at once; wall time and peak RSS of each (wait4)."""
    cmd = [sys.executable, "-m", "orchestrator", "recover", "--until-idle"]
    cmd += ["--concurrency", str(concurrency), "--batch", str(batch), "--json"]
    if pyspy:  # profiling run: RSS is then py-spy's, not the job's
        spy = str(Path(sys.executable).parent / "py-spy")
        cmd = [spy, "record", "-r", "200", "--format", "raw", "-o", pyspy, "--", *cmd]
    started = time.perf_counter()
    children = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(procs)
    ]
    out = []
    for child in children:
        # wait4 (not Popen.wait) to get this child's own peak RSS; stdout is tiny (one line).
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout = child.stdout.read() if child.stdout else ""
        stderr = child.stderr.read() if child.stderr else ""
        out.append(
            {
                "exit_code": child.returncode,
                "wall_s": time.perf_counter() - started,
                "peak_rss_mb": usage.ru_maxrss / 1024.0,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "summary": stdout.strip().splitlines()[-1] if stdout.strip() else "",
                "stderr_tail": stderr[-1500:],
            }
        )
    return out


async def scenario(args: argparse.Namespace, procs: int) -> dict[str, Any]:
    with (
        SandboxServer(SandboxConfig(latency_ms=0.0)) as sandbox,
        scratch_database("bench_recovery") as (dbname, db_url),
    ):
        control = SandboxControl(sandbox.control_url)
        t0 = time.perf_counter()
        made = await seed(db_url, sandbox.base_url, args.n, args.seed_concurrency)
        seed_s = time.perf_counter() - t0
        before = states(dbname)
        flying = in_flight(dbname)
        print(f"[{procs} proc] seeded {args.n} in {seed_s:.0f} s: {before}, in flight {flying}")
        await asyncio.sleep(2.5)  # the seeding worker's 2 s leases expire
        await control.configure(latency_ms=args.latency_ms)
        stats0 = await control.stats()
        cpu0 = (process_cpu_s(sandbox.pid), postgres_cpu_s())
        runs = await asyncio.to_thread(
            run_recovery,
            procs,
            args.concurrency,
            args.batch,
            recover_env(db_url, sandbox.base_url),
            args.pyspy,
        )
        stats1 = await control.stats()
        sandbox_cpu = process_cpu_s(sandbox.pid) - cpu0[0]
        postgres_cpu = postgres_cpu_s() - cpu0[1]
        after = states(dbname)
        await control.aclose()

    wall = max(r["wall_s"] for r in runs)
    recovered = sum(v for k, v in before.items() if k not in TERMINAL_STATES)
    calls0, calls1 = stats0["calls_by_op"], stats1["calls_by_op"]
    calls = {k: v - calls0.get(k, 0) for k, v in calls1.items() if v - calls0.get(k, 0)}
    dup = sum(stats1["duplicate_submits"].values())
    result = {
        "processes": procs,
        "concurrency_per_process": args.concurrency,
        "batch": args.batch,
        "latency_ms": args.latency_ms,
        "checkouts": args.n,
        "seeded": made,
        "seed_s": seed_s,
        "in_flight_at_start": flying,
        "states_before": before,
        "states_after": after,
        "time_to_idle_s": wall,
        "checkouts_per_s": recovered / wall,
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
        "cpu_s_total": sum(r["cpu_s"] for r in runs),
        # Where the machine's 2 cores went while recovering: the bar is a wall time, and the
        # sandbox (Violet's stand-in) and PostgreSQL share the cores with the recover process.
        "sandbox_cpu_s": sandbox_cpu,
        "postgres_cpu_s": postgres_cpu,
        "core_seconds_available": wall * (os.cpu_count() or 1),
        "violet_calls_during_recovery": calls,
        "duplicate_submits": dup,
        "left_non_terminal": sum(v for k, v in after.items() if k not in TERMINAL_STATES),
        "processes_detail": runs,
        "bar_time_lt_60s": wall < 60.0,
        "bar_rss_lt_200mb": max(r["peak_rss_mb"] for r in runs) < 200.0,
    }
    print(
        f"[{procs} proc] idle after {wall:.1f} s, "
        f"{result['checkouts_per_s']:.0f} checkouts/s, "
        f"peak RSS {result['peak_rss_mb_max']:.0f} MB, states {after}, duplicate submits {dup}"
    )
    print(
        f"[{procs} proc] CPU s: recover {result['cpu_s_total']:.1f}, sandbox {sandbox_cpu:.1f}, "
        f"postgres {postgres_cpu:.1f} of {result['core_seconds_available']:.0f} core-seconds"
    )
    for r in runs:
        if r["exit_code"] != 0:
            print(f"  exit {r['exit_code']}: {r['stderr_tail']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 checkouts")
    parser.add_argument("--n", type=int, default=0, help="checkouts (default 10,000)")
    parser.add_argument("--concurrency", type=int, default=150, help="per recover process")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--seed-concurrency", type=int, default=32)
    parser.add_argument("--procs", default="1,3", help="process counts to run, e.g. 1,3")
    parser.add_argument("--pyspy", default="", help="profile the recover process(es) to this file")
    args = parser.parse_args()
    args.n = args.n or (1_000 if args.quick else 10_000)
    logging.basicConfig(level=logging.WARNING)
    info = machine_info()
    results = [asyncio.run(scenario(args, int(p))) for p in args.procs.split(",")]
    headers = [
        "procs",
        "C/proc",
        "N",
        "in flight",
        "idle s",
        "ckout/s",
        "peak RSS MB",
        "cpu s",
    ]
    headers += ["dup submits", "left", "<60 s", "<200 MB"]
    rows = [
        [r["processes"], r["concurrency_per_process"], r["checkouts"],
         r["in_flight_at_start"],
         r["time_to_idle_s"], r["checkouts_per_s"], r["peak_rss_mb_max"], r["cpu_s_total"],
         r["duplicate_submits"], r["left_non_terminal"], r["bar_time_lt_60s"],
         r["bar_rss_lt_200mb"]]
        for r in results
    ]  # fmt: skip
    print(table(headers, rows, digits=1))
    payload = {
        "machine": info,
        "results": results,
        "markdown": markdown_table(headers, rows, digits=1),
    }
    save_results("recovery", args.quick, payload)


if __name__ == "__main__":
    main()
