"""Where a lone persisted checkout's extra latency goes (the C = 1, L = 0 bar of bench 1).

    uv run --group bench python -m bench.critical_path [--quick]

Runs (a) the bare flow, (b) `Orchestrator.start()` and (bs) the same with overlapped writes off
(every write committed before the next call) one checkout at a time against the sandbox
at L = 0, interleaved and repeated, with the awaits of b's critical path timed in place (bench-only
wrappers around the client's HTTP exchange, the insert, the runner's ordered writes and its wait
for a write left running behind a call). b's added latency per checkout splits into

  commits    the insert and every write awaited before the next call (create-cart's outcome, the
             price outcome + submit intent, the submit outcome): durable commits on the path
  settle     waiting for a write that ran behind a call (it should be done by then)
  http       how much longer b's 7 HTTP exchanges take than a's (the writes running behind a
             call share the process and the two cores with it)
  rest       everything else: the runner, the machine, request validation, audit capture

and the floor is what the durable commits alone add per step, whatever the CPU work costs.
Results: bench/results/critical_path[_quick].json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.common import (
    bench_settings,
    machine_info,
    save_results,
    scratch_database,
    table,
)
from bench.throughput import (
    STEPS_PER_CHECKOUT,
    bare_checkout,
    orchestrated_checkout,
    run_closed_loop,
    violet_client,
)
from orchestrator.api import Orchestrator
from orchestrator.engine.recorder import Recorder
from orchestrator.sandbox import SandboxConfig, SandboxServer
from orchestrator.store.repository import Repository
from orchestrator.violet.client import VioletClient

PARTS = ("http", "insert", "ordered writes", "settle")
COMMITS = "commits (insert + ordered writes)"
ADDED = "added latency (mean - a's)"


def _per_step(ms: float) -> tuple[float, float]:
    return ms, ms / STEPS_PER_CHECKOUT


def _breakdown(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """b's added latency per checkout, split by where it was spent (see the module docstring)."""
    added = b["mean_ms"] - a["mean_ms"]
    commits = b["insert"] + b["ordered writes"]
    http = b["http"] - a["http"]
    return {
        COMMITS: commits,
        "settle (writes behind a call)": b["settle"],
        "http (exchanges - a's)": http,
        "rest (CPU between awaits)": added - commits - b["settle"] - http,
        ADDED: added,
    }


@contextmanager
def timed_awaits(totals: dict[str, float]) -> Iterator[None]:
    """Add the wall time of every await of the critical path into `totals`, by part."""
    originals: list[tuple[type, str, Any]] = []

    def wrap(cls: type, name: str, part: Callable[[dict[str, Any]], str | None]) -> None:
        original = getattr(cls, name)
        originals.append((cls, name, original))

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0, settled0 = time.perf_counter(), totals["settle"]
            try:
                return await original(*args, **kwargs)
            finally:
                label = part(kwargs)
                if label is not None:
                    elapsed = time.perf_counter() - t0
                    if label != "settle":  # a write first settles the one behind: not twice
                        elapsed -= totals["settle"] - settled0
                    totals[label] += elapsed

        setattr(cls, name, timed)

    wrap(VioletClient, "_exchange", lambda _: "http")
    wrap(Repository, "insert", lambda _: "insert")
    # A write started behind a call returns at once; its wait is counted under "settle".
    wrap(Recorder, "write", lambda kw: None if kw.get("behind_of") else "ordered writes")
    wrap(Recorder, "settle", lambda _: "settle")
    try:
        yield
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    n = 150 if args.quick else 500
    repeats = 2 if args.quick else 3
    runs: dict[str, list[dict[str, float]]] = defaultdict(list)
    with (
        SandboxServer(SandboxConfig(latency_ms=0.0)) as sandbox,
        scratch_database("bench_cp") as (_, db_url),
    ):
        client = violet_client(sandbox.base_url)
        orch = await Orchestrator(bench_settings(db_url, sandbox.base_url), client=client).open()
        ordered = bench_settings(db_url, sandbox.base_url, overlap_writes=False)
        orch_s = await Orchestrator(ordered, client=client).open()
        await client.login()
        flows: dict[str, Callable[[], Awaitable[bool]]] = {
            "a": lambda: bare_checkout(client),
            "b": lambda: orchestrated_checkout(orch),
            "bs": lambda: orchestrated_checkout(orch_s),
        }
        for flow in flows.values():
            await run_closed_loop(flow, 50, 1)  # warm-up
        for rep in range(repeats):
            for who, flow in flows.items():
                totals: dict[str, float] = defaultdict(float)
                with timed_awaits(totals):
                    watch, lats, failures = await run_closed_loop(flow, n, 1)
                figures = {
                    "mean_ms": statistics.fmean(lats),
                    "p50_ms": statistics.median(lats),
                    "cpu_ms": watch.cpu * 1000 / n,
                    "failures": failures,
                    **{part: totals[part] * 1000 / n for part in PARTS},
                }
                runs[who].append(figures)
                print(
                    f"rep={rep} {who}: mean {figures['mean_ms']:6.2f} ms, cpu "
                    f"{figures['cpu_ms']:5.2f} ms, "
                    + ", ".join(f"{p} {figures[p]:5.2f}" for p in PARTS)
                    + f", failures {failures}",
                    flush=True,
                )
                if failures:  # a failed checkout is a short one: the breakdown would lie
                    raise SystemExit(f"{who}: {failures} of {n} checkouts failed")
        await orch.close()
        await orch_s.close()
        await client.aclose()

    med = {who: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for who, rs in runs.items()}
    a = med["a"]
    breakdown = {who: _breakdown(a, med[who]) for who in ("b", "bs")}
    rows = [
        [name, *(v for who in ("b", "bs") for v in _per_step(breakdown[who][name]))]
        for name in breakdown["b"]
    ]
    print()
    print(table(["per checkout", "b ms", "b ms/step", "bs ms", "bs ms/step"], rows))
    floor = breakdown["b"][COMMITS] / STEPS_PER_CHECKOUT
    print(
        f"\nmean a {a['mean_ms']:.2f} ms, b {med['b']['mean_ms']:.2f},"
        f" bs {med['bs']['mean_ms']:.2f}"
        f" (bs: overlapped writes off); client CPU a {a['cpu_ms']:.2f}, b {med['b']['cpu_ms']:.2f},"
        f" bs {med['bs']['cpu_ms']:.2f} ms. b's durable commits alone add {floor:.2f} ms per step"
        " (bar: 0.5 ms for everything)."
    )
    return {
        "machine": machine_info(),
        "n": n,
        "repeats": repeats,
        "runs": runs,
        "median": med,
        "breakdown_ms": breakdown,
        "commit_floor_ms_per_step": floor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.critical_path", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="150 checkouts per run, 2 repeats")
    args = parser.parse_args()
    payload = asyncio.run(main_async(args))
    save_results("critical_path", args.quick, payload)


if __name__ == "__main__":
    main()
