"""Benchmark 1: throughput and overhead of a persisted checkout against the bare Violet flow.

    uv run --group bench python -m bench.throughput [--quick]

The sandbox runs over HTTP in its own process; its per-call latency L is changed between
scenarios through its control surface. For each (L, C) scenario the contenders run N checkouts
each at concurrency C, interleaved (a, b, c, a, b, c, ...), `repeats` times:

  a   bare flow: the 7 Violet calls with one VioletClient, nothing persisted
  b   the orchestrator: Orchestrator.start() with a token payment (persisted, crash-safe)
  c   DBOS Transact: the same 7 calls as one workflow, one step per call (bench/dbos_flow.py),
      in a process of its own (bench/dbos_worker.py) so its background threads stay out of a/b
  a4  / b4: as a / b with a pool of 4 VioletClients instead of one shared (C=64 only)
  bs  b with ORCHESTRATOR_OVERLAP_WRITES off: every write committed before the next call
      (`--sequential`), to measure what overlapping the overwrite steps' writes buys

Ratios are taken per repeat (b_i / a_i) and the median is reported: the machine is shared.

Per checkout it reports the client's CPU ("cpu ms/ck", this process), the CPU of the whole
machine ("all cpu": client + sandbox process + every PostgreSQL process) and the cyclic GC's time
(part of the client's). A client on one event loop saturates one core: where "cpu ms/ck" x
checkouts/s reaches ~1000 ms/s while "all cpu" leaves a core idle, b/a is the ratio of the two
clients' CPU and nothing else (the database is not what limits it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.common import (
    ADDRESS,
    CUSTOMER,
    PHYSICAL_SKU,
    Stopwatch,
    bench_settings,
    checkout_request,
    machine_info,
    markdown_table,
    median,
    percentile,
    postgres_cpu_s,
    process_cpu_s,
    ratio,
    scratch_database,
    table,
    write_results,
)
from orchestrator.api import Orchestrator
from orchestrator.sandbox import SandboxConfig, SandboxControl, SandboxServer
from orchestrator.store import database
from orchestrator.violet import (
    Address,
    Customer,
    ShippingSelection,
    SkuLine,
    TokenPayment,
    VioletClient,
)

log = logging.getLogger("bench.throughput")

Checkout = Callable[[], Awaitable[bool]]
STEPS_PER_CHECKOUT = 7
DB_POOL = 16


@dataclass
class RunResult:
    contender: str
    latency_ms: float
    concurrency: int
    n: int
    repeat: int
    wall_s: float
    cpu_s: float
    failures: int
    latencies_ms: list[float] = field(repr=False)
    #: CPU the sandbox process and every PostgreSQL process spent during the run: with the
    #: client's, what one checkout costs the whole (shared, 2-core) machine.
    sandbox_cpu_s: float = 0.0
    postgres_cpu_s: float = 0.0
    #: Time in the cyclic GC, and collections per generation (part of cpu_s).
    gc_s: float = 0.0
    gc_collections: list[int] = field(default_factory=lambda: [0, 0, 0])

    @property
    def throughput(self) -> float:
        return self.n / self.wall_s

    @property
    def cpu_ms_per_checkout(self) -> float:
        return self.cpu_s * 1000.0 / self.n

    @property
    def machine_cpu_ms_per_checkout(self) -> float:
        return (self.cpu_s + self.sandbox_cpu_s + self.postgres_cpu_s) * 1000.0 / self.n

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        del data["latencies_ms"]
        data.update(
            checkouts_per_s=self.throughput,
            p50_ms=percentile(self.latencies_ms, 50),
            p99_ms=percentile(self.latencies_ms, 99),
            mean_ms=sum(self.latencies_ms) / len(self.latencies_ms),
            cpu_ms_per_checkout=self.cpu_ms_per_checkout,
            sandbox_cpu_ms_per_checkout=self.sandbox_cpu_s * 1000.0 / self.n,
            postgres_cpu_ms_per_checkout=self.postgres_cpu_s * 1000.0 / self.n,
            machine_cpu_ms_per_checkout=self.machine_cpu_ms_per_checkout,
            gc_ms_per_checkout=self.gc_s * 1000.0 / self.n,
        )
        return data


# -- the contenders -----------------------------------------------------------------------------


def violet_client(base_url: str) -> VioletClient:
    from orchestrator.sandbox import SANDBOX_CREDENTIALS as CRED

    return VioletClient(
        base_url=base_url,
        app_id=CRED["app_id"],
        app_secret=CRED["app_secret"],
        username=CRED["username"],
        password=CRED["password"],
    )


_ADDRESS = Address.model_validate(ADDRESS)


async def bare_checkout(client: VioletClient) -> bool:
    """The 7 calls the orchestrator makes for a token-paid physical checkout, no persistence."""
    request = checkout_request("bare")
    cart = await client.create_cart(
        skus=[SkuLine(sku_id=PHYSICAL_SKU, quantity=1)],
        app_order_id=request["app_order_id"],
        currency="USD",
    )
    customer = Customer(
        **CUSTOMER, shipping_address=_ADDRESS, billing_address=_ADDRESS, same_address=True
    )
    await client.apply_customer(cart.id, customer)
    offers = await client.get_available_shipping_methods(cart.id)
    selections = [
        ShippingSelection(
            bag_id=o.bag_id,
            shipping_method_id=min(
                o.shipping_methods, key=lambda m: m.price or 0
            ).shipping_method_id,
        )
        for o in offers
    ]
    await client.set_shipping_methods(cart.id, selections)
    await client.apply_payment(cart.id, TokenPayment(token="tok_visa", payment_provider="STRIPE"))
    await client.price_cart(cart.id)
    submitted = await client.submit(cart.id, app_order_id=request["app_order_id"])
    return submitted.is_submitted


async def orchestrated_checkout(orch: Orchestrator) -> bool:
    checkout = await orch.start(checkout_request("orch"))
    return checkout.state == "submitted"


def round_robin(items: list[Any]) -> Callable[[], Any]:
    cycle = itertools.cycle(items)
    return lambda: next(cycle)


# -- running --------------------------------------------------------------------------------------


async def run_closed_loop(
    checkout: Checkout, n: int, concurrency: int
) -> tuple[Stopwatch, list[float], int]:
    """C workers each run checkouts back to back until N are done; per-checkout wall latency."""
    latencies: list[float] = []
    failures = 0
    tickets = iter(range(n))

    async def worker() -> None:
        nonlocal failures
        for _ in tickets:
            t0 = time.perf_counter()
            try:
                ok = await checkout()
            except Exception:
                log.exception("checkout failed")
                ok = False
            latencies.append((time.perf_counter() - t0) * 1000.0)
            failures += not ok

    gc.collect()
    watch = Stopwatch()
    with watch.run():
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return watch, latencies, failures


class DbosWorker:
    """Contender c in its own process (bench/dbos_worker.py): DBOS's background threads must
    not take CPU from the other contenders' runs. One JSON line per run, each way."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, db_url: str, base_url: str) -> DbosWorker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.dbos_worker", db_url, base_url, str(DB_POOL),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        worker = cls(process)
        await worker._reply()  # {"ready": true} once DBOS is launched
        return worker

    async def _reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            with contextlib.suppress(ValueError):
                reply = json.loads(line)
                if isinstance(reply, dict):
                    return reply
        raise RuntimeError(f"DBOS worker exited ({await self.process.wait()})")

    async def run(self, n: int, concurrency: int) -> tuple[Stopwatch, list[float], int]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"n": n, "concurrency": concurrency}).encode() + b"\n")
        await self.process.stdin.drain()
        reply = await self._reply()
        watch = Stopwatch(reply["wall_s"], reply["cpu_s"], reply["gc_s"], reply["gc_collections"])
        return watch, reply["latencies_ms"], reply["failures"]

    async def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 60)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@dataclass(frozen=True)
class Scenario:
    latency_ms: float
    concurrency: int
    n: int


def scenarios(quick: bool, n_full: int) -> list[Scenario]:
    if quick:
        n = 120
        return [
            Scenario(0, 1, 60),
            Scenario(0, 16, n),
            Scenario(20, 64, n),
            Scenario(100, 64, n * 2),
        ]
    out = []
    for lat in (0.0, 20.0, 100.0):
        for conc in (1, 16, 64):
            n = n_full
            if conc == 1 and lat > 0:
                # A serial run at L costs 7*L per checkout: cap each contender run at ~20 s.
                n = max(30, int(20_000 / (STEPS_PER_CHECKOUT * lat)))
            out.append(Scenario(lat, conc, n))
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    info = machine_info()
    plan = scenarios(args.quick, args.n)
    if args.scenario:
        plan = [
            Scenario(float(lat), int(conc), int(n))
            for lat, conc, n in (item.split(",") for item in args.scenario)
        ]
    repeats = args.repeats or (2 if args.quick else 3)
    contenders = [c for c in ("a", "b", "c") if c not in args.skip]
    if args.sequential:
        contenders.insert(contenders.index("b") + 1 if "b" in contenders else 0, "bs")
    results: list[RunResult] = []

    with (
        SandboxServer(SandboxConfig(latency_ms=0.0)) as sandbox,
        scratch_database("bench_tp") as (_, db_url),
    ):
        control = SandboxControl(sandbox.control_url)
        # Connections stay well under max_connections (100, shared with other sessions): each
        # orchestrator's psycopg pool grows to db_pool_size under load.
        settings = bench_settings(db_url, sandbox.base_url, db_pool_size=DB_POOL)
        client = violet_client(sandbox.base_url)
        pool_clients = [violet_client(sandbox.base_url) for _ in range(args.pool)]
        orch = await Orchestrator(settings, client=client).open()
        shared_engine = database.create_engine(db_url, pool_size=2)
        pool_settings = bench_settings(
            db_url, sandbox.base_url, db_pool_size=max(2, DB_POOL // max(1, args.pool))
        )
        pool_orchs = [
            await Orchestrator(pool_settings, client=c, engine=shared_engine).open()
            for c in pool_clients
        ]
        dbos = await DbosWorker.start(db_url, sandbox.base_url) if "c" in contenders else None
        orch_s = orch
        if args.sequential:
            seq_settings = bench_settings(
                db_url, sandbox.base_url, db_pool_size=DB_POOL, overlap_writes=False
            )
            orch_s = await Orchestrator(seq_settings, client=client).open()
        for c in [client, *pool_clients]:
            await c.login()

        pick_client = round_robin(pool_clients)
        pick_orch = round_robin(pool_orchs)
        runners: dict[str, Checkout] = {
            "a": lambda: bare_checkout(client),
            "b": lambda: orchestrated_checkout(orch),
            "a4": lambda: bare_checkout(pick_client()),
            "b4": lambda: orchestrated_checkout(pick_orch()),
            "bs": lambda: orchestrated_checkout(orch_s),
        }

        async def run(name: str, n: int, concurrency: int) -> tuple[Stopwatch, list[float], int]:
            if name == "c":
                assert dbos is not None
                return await dbos.run(n, concurrency)
            return await run_closed_loop(runners[name], n, concurrency)

        try:
            for sc in plan:
                await control.configure(
                    latency_ms=sc.latency_ms, latency_jitter_ms=args.jitter_ms * sc.latency_ms
                )
                names = list(contenders)
                if sc.concurrency == 64 and args.pool and not args.quick_pool_skip:
                    names += ["a4", "b4"]
                # Warm-up: connections, token, JIT-ish caches of every contender.
                for name in names:
                    await run(name, min(sc.n, 2 * sc.concurrency), sc.concurrency)
                for rep in range(repeats):
                    await control.reset()
                    for name in names:
                        others0 = process_cpu_s(sandbox.pid), postgres_cpu_s()
                        watch, lats, failures = await run(name, sc.n, sc.concurrency)
                        result = RunResult(
                            name, sc.latency_ms, sc.concurrency, sc.n, rep,
                            watch.wall, watch.cpu, failures, lats,
                            process_cpu_s(sandbox.pid) - others0[0],
                            postgres_cpu_s() - others0[1],
                            watch.gc_s, watch.gc_collections,
                        )  # fmt: skip
                        results.append(result)
                        s = result.summary()
                        print(
                            f"L={sc.latency_ms:>5.0f} C={sc.concurrency:>2} rep={rep} {name:>2}: "
                            f"{s['checkouts_per_s']:7.1f}/s  p50 {s['p50_ms']:7.1f} ms  "
                            f"p99 {s['p99_ms']:7.1f} ms  cpu {s['cpu_ms_per_checkout']:6.2f} ms"
                            f" (+sandbox {s['sandbox_cpu_ms_per_checkout']:5.2f}"
                            f" +pg {s['postgres_cpu_ms_per_checkout']:5.2f})"
                            f"  gc {s['gc_ms_per_checkout']:5.3f} ms {result.gc_collections}"
                            f"  failures {failures}",
                            flush=True,
                        )
                report(info, plan, repeats, results, args, quiet=True)  # saved as we go
        finally:
            if dbos is not None:
                await dbos.stop()
            for o in {id(o): o for o in [orch, orch_s, *pool_orchs]}.values():
                await o.close()
            await shared_engine.dispose()
            for c in [client, *pool_clients]:
                await c.aclose()
            await control.aclose()

    return report(info, plan, repeats, results, args)


# -- reporting ------------------------------------------------------------------------------------


def _group(results: list[RunResult]) -> dict[tuple[float, int], dict[str, list[RunResult]]]:
    grouped: dict[tuple[float, int], dict[str, list[RunResult]]] = {}
    for r in results:
        grouped.setdefault((r.latency_ms, r.concurrency), {}).setdefault(r.contender, []).append(r)
    return grouped


def _paired(xs: list[RunResult], ys: list[RunResult], key: Callable[[RunResult], float]) -> float:
    return median([ratio(key(x), key(y)) for x, y in zip(xs, ys, strict=False)])


def report(
    info: dict[str, Any],
    plan: list[Scenario],
    repeats: int,
    results: list[RunResult],
    args: argparse.Namespace,
    *,
    quiet: bool = False,
) -> dict[str, Any]:
    grouped = _group(results)
    rows: list[list[Any]] = []
    summary: list[dict[str, Any]] = []
    for (lat, conc), by in grouped.items():
        base = by.get("a")
        for name, runs in by.items():
            tp = median([r.throughput for r in runs])
            row = {
                "latency_ms": lat,
                "concurrency": conc,
                "n": runs[0].n,
                "contender": name,
                "checkouts_per_s": tp,
                "p50_ms": median([percentile(r.latencies_ms, 50) for r in runs]),
                "p99_ms": median([percentile(r.latencies_ms, 99) for r in runs]),
                "mean_ms": median([sum(r.latencies_ms) / r.n for r in runs]),
                "cpu_ms_per_checkout": median([r.cpu_ms_per_checkout for r in runs]),
                "machine_cpu_ms_per_checkout": median(
                    [r.machine_cpu_ms_per_checkout for r in runs]
                ),
                "gc_ms_per_checkout": median([r.gc_s * 1000.0 / r.n for r in runs]),
                "failures": sum(r.failures for r in runs),
                "ratio_vs_a": _paired(runs, base, lambda r: r.throughput) if base else None,
                "ratio_vs_c": (
                    _paired(runs, by["c"], lambda r: r.throughput) if "c" in by else None
                ),
            }
            summary.append(row)
            rows.append(
                [lat, conc, row["n"], name, tp, row["p50_ms"], row["p99_ms"],
                 row["cpu_ms_per_checkout"], row["machine_cpu_ms_per_checkout"],
                 row["ratio_vs_a"] or float("nan"),
                 row["ratio_vs_c"] or float("nan"), row["failures"]]
            )  # fmt: skip
    headers = [
        "L ms",
        "C",
        "N",
        "who",
        "ckout/s",
        "p50 ms",
        "p99 ms",
        "cpu ms/ck",
        "all cpu",
        "x a",
        "x c",
        "fail",
    ]
    if not quiet:
        print()
        print(table(headers, rows))

    def get(lat: float, conc: int, name: str) -> list[RunResult]:
        return grouped.get((lat, conc), {}).get(name, [])

    bars: list[dict[str, Any]] = []

    def bar(name: str, value: float | None, op: str, threshold: float) -> None:
        if value is None or value != value:
            bars.append({"bar": name, "value": None, "threshold": f"{op} {threshold}", "met": None})
            return
        met = value >= threshold if op == ">=" else value <= threshold
        bars.append({"bar": name, "value": value, "threshold": f"{op} {threshold}", "met": met})

    for lat, conc, need in ((100.0, 64, 0.95), (20.0, 64, 0.75), (0.0, 16, 0.50)):
        b, a = get(lat, conc, "b"), get(lat, conc, "a")
        bar(
            f"b/a throughput L={lat:.0f} C={conc}",
            _paired(b, a, lambda r: r.throughput) if a and b else None,
            ">=",
            need,
        )
    b, c = get(20.0, 64, "b"), get(20.0, 64, "c")
    bar(
        "b/c throughput L=20 C=64",
        _paired(b, c, lambda r: r.throughput) if b and c else None,
        ">=",
        5.0,
    )
    b, a = get(0.0, 1, "b"), get(0.0, 1, "a")
    added = None
    if a and b:
        added = median(
            [
                (percentile(rb.latencies_ms, 50) - percentile(ra.latencies_ms, 50))
                / STEPS_PER_CHECKOUT
                for ra, rb in zip(a, b, strict=False)
            ]
        )
    bar("added latency per step, ms (p50, C=1, L=0)", added, "<=", 0.5)
    if a and b:
        added_cpu = median(
            [
                (rb.cpu_ms_per_checkout - ra.cpu_ms_per_checkout) / STEPS_PER_CHECKOUT
                for ra, rb in zip(a, b, strict=False)
            ]
        )
        bars.append(
            {
                "bar": "added client CPU per step, ms (C=1, L=0)",
                "value": added_cpu,
                "threshold": "info",
                "met": None,
            }
        )
    for lat, conc in sorted(grouped):
        x, y = get(lat, conc, "b"), get(lat, conc, "bs")
        if x and y:
            bars.append(
                {
                    "bar": f"b/bs x/s (overlapped vs ordered writes), L={lat:.0f} C={conc}",
                    "value": _paired(x, y, lambda r: r.throughput),
                    "threshold": "info",
                    "met": None,
                }
            )
    bs = get(0.0, 1, "bs")
    if a and bs:
        bars.append(
            {
                "bar": "bs: added latency per step, ms (p50, C=1, L=0)",
                "value": median(
                    [
                        (percentile(rs.latencies_ms, 50) - percentile(ra.latencies_ms, 50))
                        / STEPS_PER_CHECKOUT
                        for ra, rs in zip(a, bs, strict=False)
                    ]
                ),
                "threshold": "info",
                "met": None,
            }
        )
    for lat in sorted({r.latency_ms for r in results}):
        for name, base_name in (("a4", "a"), ("b4", "b")):
            x, y = get(lat, 64, name), get(lat, 64, base_name)
            if x and y:
                bars.append(
                    {
                        "bar": f"{name}/{base_name} x/s, {args.pool} clients, L={lat:.0f} C=64",
                        "value": _paired(x, y, lambda r: r.throughput),
                        "threshold": "info",
                        "met": None,
                    }
                )
    if not quiet:
        print()
        print(
            table(
                ["bar", "value", "threshold", "met"],
                [
                    [
                        b["bar"],
                        b["value"] if b["value"] is not None else float("nan"),
                        b["threshold"],
                        b["met"],
                    ]
                    for b in bars
                ],
                digits=3,
            )
        )
    payload = {
        "bench": "throughput",
        "mode": "quick" if args.quick else "full",
        "machine": info,
        "repeats": repeats,
        "latency_jitter_fraction": args.jitter_ms,
        "gc_threshold": list(gc.get_threshold()),
        "scenarios": [asdict(s) for s in plan],
        "summary": summary,
        "bars": bars,
        "runs": [r.summary() for r in results],
        "markdown": markdown_table(headers, rows),
    }
    name = args.name or ("throughput" + ("_quick" if args.quick else ""))
    path = write_results(name, payload)
    if not quiet:
        print(f"\nwrote {path}")
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="bar scenarios only, small N")
    parser.add_argument("--n", type=int, default=500, help="checkouts per contender run (full)")
    parser.add_argument("--repeats", type=int, default=0, help="default 2 quick, 3 full")
    parser.add_argument(
        "--pool", type=int, default=4, help="clients in the pooled variant (0: off)"
    )
    parser.add_argument(
        "--sequential", action="store_true", help="add 'bs': b with overlapped writes off"
    )
    parser.add_argument(
        "--tune-gc",
        action="store_true",
        help="raise the GC thresholds for the whole process (every contender), as the CLI does",
    )
    parser.add_argument("--skip", default="", help="contenders to skip, e.g. 'c'")
    parser.add_argument(
        "--jitter",
        dest="jitter_ms",
        type=float,
        default=0.0,
        help="per-call latency jitter as a fraction of L (0.5: L +- 50%%, uniform; default 0)",
    )
    parser.add_argument(
        "--scenario", action="append", default=[], help="L,C,N instead of the plan (repeatable)"
    )
    parser.add_argument("--name", default="", help="results file name (default by mode)")
    parser.add_argument("--quick-pool-skip", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.tune_gc:
        from orchestrator import aio

        aio.tune_gc()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
