"""Profile one contender of the throughput bench under cProfile (client process only).

    uv run --group bench python -m bench.profile_flow --who b --n 300 --concurrency 1

Prints the functions with the most own time and the most cumulative time, so a missed bar comes
with the file and function that cost it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import pstats

from bench.common import Stopwatch, bench_settings, scratch_database
from bench.throughput import bare_checkout, orchestrated_checkout, run_closed_loop, violet_client
from orchestrator.api import Orchestrator
from orchestrator.sandbox import SandboxConfig, SandboxServer


async def main_async(args: argparse.Namespace) -> None:
    with (
        SandboxServer(SandboxConfig(latency_ms=args.latency_ms)) as sandbox,
        scratch_database("bench_prof") as (_, db_url),
    ):
        client = violet_client(sandbox.base_url)
        orch = await Orchestrator(bench_settings(db_url, sandbox.base_url), client=client).open()
        await client.login()

        def one() -> object:
            return bare_checkout(client) if args.who == "a" else orchestrated_checkout(orch)

        await run_closed_loop(one, 50, args.concurrency)  # type: ignore[arg-type]
        profiler = cProfile.Profile() if args.profile else None
        watch = Stopwatch()
        with watch.run():
            if profiler:
                profiler.enable()
            _, _, failures = await run_closed_loop(one, args.n, args.concurrency)  # type: ignore[arg-type]
            if profiler:
                profiler.disable()
        await orch.close()
        await client.aclose()
    print(
        f"{args.who}: {args.n / watch.wall:.1f}/s, cpu {watch.cpu * 1000 / args.n:.2f} ms/checkout"
        f" (profiled: {bool(profiler)}), failures {failures}"
    )
    if profiler:
        out = io.StringIO()
        if args.out:
            profiler.dump_stats(args.out)
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_flow")
    parser.add_argument("--who", choices=["a", "b"], default="b")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--out", default="", help="also dump the raw profile here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
