"""Contender (c) of the throughput bench in a process of its own.

    python -m bench.dbos_worker DB_URL SANDBOX_BASE_URL POOL_SIZE

DBOS is a process-wide singleton with background threads (queue polling, recovery) that run
for as long as it is launched. Launched inside the bench process, those threads take CPU and
the GIL from whichever contender runs next: at L = 20 ms, C = 64 the bare flow's client CPU rises
~8% and the orchestrator's ~12% (it runs longer per checkout), so a full run's b/a reads 0.658
instead of 0.680 (docs/performance.md). Here DBOS has a process to itself; the bench sends one
JSON line per run (`{"n": N, "concurrency": C}`) and reads one back with wall, CPU, GC and
latencies.
"""

from __future__ import annotations

import asyncio
import json
import sys

from bench import dbos_flow
from bench.common import checkout_request
from bench.throughput import run_closed_loop, violet_client


async def _checkout() -> bool:
    status = await dbos_flow.checkout(checkout_request("dbos"))
    return status is not None and status != "IN_PROGRESS"


async def main_async(db_url: str, base_url: str, pool_size: int) -> None:
    client = violet_client(base_url)
    await asyncio.to_thread(dbos_flow.launch, db_url, pool_size=pool_size)
    dbos_flow.set_client(client)
    await client.login()
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": True}), flush=True)
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            order = json.loads(line)
            watch, latencies, failures = await run_closed_loop(
                _checkout, order["n"], order["concurrency"]
            )
            reply = {
                "wall_s": watch.wall,
                "cpu_s": watch.cpu,
                "gc_s": watch.gc_s,
                "gc_collections": watch.gc_collections,
                "failures": failures,
                "latencies_ms": latencies,
            }
            print(json.dumps(reply), flush=True)
    finally:
        await asyncio.to_thread(dbos_flow.shutdown)
        await client.aclose()


def main() -> None:
    db_url, base_url, pool_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(main_async(db_url, base_url, pool_size))


if __name__ == "__main__":
    main()
