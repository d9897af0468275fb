"""Receiving keeps up: accepted webhooks per second and answer times at concurrency 64.

    uv run python -m bench.webhooks [--quick] [--concurrency 64]

Contenders, interleaved round by round, each storing fresh events in the same scratch database:

  bare1     the inbox INSERT alone, one connection, one at a time (autocommit): the floor of
            one durable event (round trip + WAL flush)
  bare64    the same INSERT from 64 concurrent tasks through a psycopg pool the receiver's size:
            what the database alone gives at this concurrency
  group64   the receiver's own writer (`InboxWriter`: inserts that queue up share a statement)
            from 64 concurrent tasks, no HTTP: the database side of the receiver alone
  http64    signed deliveries over HTTP to `orchestrator webhooks serve` (uvicorn, its own
            process) from 64 concurrent keep-alive connections: verify, parse, redact, INSERT,
            answer; each answer is timed from the first byte sent to the last byte read

The load generator is a few lines of raw HTTP/1.1 over asyncio streams (no HTTP client library),
so as little of the machine as possible goes to producing load; it still shares the machine's
cores with the receiver and PostgreSQL. Ratios are per round; medians are reported.
Results: bench/results/webhooks[_quick].json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from bench.common import machine_info, median, percentile, ratio, save_results, scratch_database
from bench.common import table as text_table
from orchestrator.store import database, inbox
from orchestrator.webhooks.signature import sign

SECRET = "bench-webhook-secret-0123456789"
ROOT = Path(__file__).resolve().parent.parent
_ANNOUNCED = re.compile(r"webhooks listening on http://([^:/]+):(\d+)/")


def order_body(n: int) -> dict[str, Any]:
    """An order event's body of a realistic size (~1.5 kB): two bags with a SKU each."""
    return {
        "id": 100000 + n,
        "app_order_id": f"bench-{n}",
        "status": "COMPLETED",
        "currency": "USD",
        "sub_total": 4200,
        "shipping_total": 500,
        "tax_total": 310,
        "total": 5010,
        "customer": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"},
        "bags": [
            {
                "id": 200000 + 2 * n + i,
                "merchant_id": 10 + i,
                "status": "ACCEPTED",
                "financial_status": "PAID",
                "fulfillment_status": "PROCESSING",
                "skus": [{"sku_id": 196777 + i, "quantity": 1, "price": 2100, "name": "Mug"}],
                "shipping_method": {"carrier": "USPS", "label": "Ground", "price": 250},
            }
            for i in range(2)
        ],
        "date_created": "2026-12-05T07:00:00+0000",
        "date_last_modified": "2026-12-05T07:05:00+0000",
    }


def events(count: int) -> list[inbox.InboxEvent]:
    return [
        inbox.InboxEvent(
            event_id=f"bench-{uuid.uuid4().hex}",
            event_type="ORDER_UPDATED",
            body=order_body(n),
            violet_order_id=100000 + n,
        )
        for n in range(count)
    ]


def requests(host: str, port: int, count: int) -> list[bytes]:
    """Signed HTTP/1.1 requests, built before the clock starts."""
    out = []
    for event in events(count):
        raw = json.dumps(event.body).encode()
        head = (
            f"POST /violet/webhooks HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
            f"X-Violet-Hmac: {sign(raw, SECRET)}\r\nX-Violet-Event-Id: {event.event_id}\r\n"
            f"X-Violet-Topic: {event.event_type}\r\nX-Violet-Order-Id: {event.violet_order_id}"
            "\r\n\r\n"
        )
        out.append(head.encode() + raw)
    return out


async def run_tasks(
    work: list[Any], concurrency: int, one: Callable[[Any, Any], Awaitable[None]], make: Any
) -> tuple[float, list[float]]:
    """Run `one(state, item)` over `work` from `concurrency` tasks; (seconds, latencies)."""
    queue = list(reversed(work))
    latencies: list[float] = []

    async def worker() -> None:
        state = await make()
        try:
            while queue:
                item = queue.pop()
                start = time.perf_counter()
                await one(state, item)
                latencies.append(time.perf_counter() - start)
        finally:
            closer = getattr(state, "close", None)
            if closer is not None:
                result = closer()
                if asyncio.iscoroutine(result):
                    await result

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


class Connection:
    """One keep-alive HTTP/1.1 connection: send a request, read the whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> None:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = head[9:12]
        length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
        await self.reader.readexactly(length)
        if status != b"200":
            raise RuntimeError(f"answer {status.decode()}: {head!r}")

    def close(self) -> None:
        self.writer.close()


async def http_round(host: str, port: int, count: int, concurrency: int) -> dict[str, float]:
    work = requests(host, port, count)

    async def make() -> Connection:
        return Connection(*await asyncio.open_connection(host, port))

    async def one(conn: Connection, request: bytes) -> None:
        await conn.exchange(request)

    return summary(*await run_tasks(work, concurrency, one, make))


async def bare_round(pool: AsyncConnectionPool, count: int, concurrency: int) -> dict[str, float]:
    work = [inbox.insert_params(event) for event in events(count)]

    async def make() -> None:
        return None

    async def one(_: None, params: dict[str, Any]) -> None:
        async with pool.connection() as conn:
            await conn.execute(inbox.INSERT_SQL, params)

    return summary(*await run_tasks(work, concurrency, one, make))


async def group_round(pool: AsyncConnectionPool, count: int, concurrency: int) -> dict[str, float]:
    writer = inbox.InboxWriter(pool)
    work = events(count)

    async def make() -> None:
        return None

    async def one(_: None, event: inbox.InboxEvent) -> None:
        await writer.insert(event)

    return summary(*await run_tasks(work, concurrency, one, make))


async def bare_one_round(url: str, count: int) -> dict[str, float]:
    work = [inbox.insert_params(event) for event in events(count)]
    conn = await AsyncConnection.connect(database.libpq_conninfo(url), autocommit=True)

    async def make() -> AsyncConnection[Any]:
        return conn

    async def one(c: AsyncConnection[Any], params: dict[str, Any]) -> None:
        await c.execute(inbox.INSERT_SQL, params)

    return summary(*await run_tasks(work, 1, one, make))


def summary(seconds: float, latencies: list[float]) -> dict[str, float]:
    return {
        "per_s": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def start_receiver(url: str, pool_size: int) -> tuple[subprocess.Popen[str], str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "VIOLET_"))}
    env.update(
        ORCHESTRATOR_DATABASE_URL=url,
        VIOLET_WEBHOOK_SECRETS=SECRET,
        ORCHESTRATOR_DB_POOL_SIZE=str(pool_size),
        PYTHONPATH=str(ROOT),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli.webhooks", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert process.stdout is not None
    found = _ANNOUNCED.search(process.stdout.readline())
    if found is None:
        process.kill()
        raise SystemExit("the receiver did not start")
    return process, found.group(1), int(found.group(2))


async def main_async(quick: bool, concurrency: int, pool_size: int) -> dict[str, Any]:
    rounds, count = (3, 2000) if quick else (5, 8000)
    results: dict[str, list[dict[str, float]]] = {
        "bare1": [],
        "bare64": [],
        "group64": [],
        "http64": [],
    }
    with scratch_database("bench_hooks") as (_, url):
        process, host, port = start_receiver(url, pool_size)
        pool = AsyncConnectionPool(
            database.libpq_conninfo(url),
            min_size=pool_size,
            max_size=pool_size,
            open=False,
            kwargs={"autocommit": True},
        )
        await pool.open(wait=True)
        try:
            await http_round(host, port, 200, concurrency)  # warm-up: connections, imports
            await bare_round(pool, 200, concurrency)
            for _ in range(rounds):
                results["bare1"].append(await bare_one_round(url, count // 4))
                results["bare64"].append(await bare_round(pool, count, concurrency))
                results["group64"].append(await group_round(pool, count, concurrency))
                results["http64"].append(await http_round(host, port, count, concurrency))
        finally:
            await pool.close()
            process.terminate()
            process.wait(30)
    return {"rounds": rounds, "events_per_round": count, "results": results}


def report(data: dict[str, Any], concurrency: int) -> dict[str, Any]:
    results = data["results"]
    med = {
        name: {key: median([r[key] for r in runs]) for key in runs[0]}
        for name, runs in results.items()
    }
    ratios = {
        "http64_per_s / bare64_per_s": median(
            [
                ratio(h["per_s"], b["per_s"])
                for h, b in zip(results["http64"], results["bare64"], strict=True)
            ]
        ),
        "http64_per_s / group64_per_s": median(
            [
                ratio(h["per_s"], g["per_s"])
                for h, g in zip(results["http64"], results["group64"], strict=True)
            ]
        ),
        "http64_per_s / bare1_per_s": median(
            [
                ratio(h["per_s"], b["per_s"])
                for h, b in zip(results["http64"], results["bare1"], strict=True)
            ]
        ),
        "http64_p99 / bare64_p99": median(
            [
                ratio(h["p99_ms"], b["p99_ms"])
                for h, b in zip(results["http64"], results["bare64"], strict=True)
            ]
        ),
        "http64_p99 / bare1_p99": median(
            [
                ratio(h["p99_ms"], b["p99_ms"])
                for h, b in zip(results["http64"], results["bare1"], strict=True)
            ]
        ),
    }
    rows = [[name, m["per_s"], m["p50_ms"], m["p99_ms"]] for name, m in med.items()]
    print(
        f"concurrency {concurrency}, {data['rounds']} rounds of {data['events_per_round']} events"
    )
    print(text_table(["contender", "per s", "p50 ms", "p99 ms"], rows, digits=2))
    print()
    print(
        text_table(
            ["ratio (median of rounds)", "value"], [[k, v] for k, v in ratios.items()], digits=3
        )
    )
    return {"medians": med, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pool", type=int, default=10, help="receiver and bare64 pool size")
    args = parser.parse_args()
    data = asyncio.run(main_async(args.quick, args.concurrency, args.pool))
    summary_ = report(data, args.concurrency)
    save_results(
        "webhooks",
        args.quick,
        {
            "machine": machine_info(),
            "concurrency": args.concurrency,
            "pool": args.pool,
            **data,
            **summary_,
        },
    )


if __name__ == "__main__":
    main()
