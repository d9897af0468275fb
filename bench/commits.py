"""Benchmark 2: transactions, durable commits and WAL syncs per checkout.

    uv run --group bench python -m bench.commits [--quick] [--private-cluster]

Runs N orchestrated checkouts (token payment, one physical SKU) against the sandbox over HTTP
and counts, over the run:
- server side, exact for the bench database: `xact_commit` / `xact_rollback` of
  `pg_stat_database` (every transaction, read-only ones included);
- cluster-wide: `wal_sync` / `wal_records` / `wal_bytes` of `pg_stat_wal`. On the shared server
  other sessions add to these, so an idle window of the same length is measured first and shown;
  `--private-cluster` runs a throw-away PG cluster of the same binaries (initdb) instead, so the
  WAL counters are ours alone;
- client side: every transaction the orchestrator's engine runs, classified by its statements
  (write or read-only), from SQLAlchemy events;
- Violet calls per checkout from the sandbox's `calls_by_op`.
Bar: durable (writing) commits per checkout <= Violet calls per checkout + 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Connection

from bench import common
from bench.common import (
    bench_settings,
    checkout_request,
    machine_info,
    markdown_table,
    scratch_database,
    table,
    write_results,
)
from bench.throughput import run_closed_loop, violet_client
from orchestrator.api import Orchestrator
from orchestrator.sandbox import SandboxConfig, SandboxControl, SandboxServer
from orchestrator.store import database, repository

_KNOWN = {
    repository._INSERT_SQL: "insert checkout (+events)",
    repository._WRITE_SQL: "step write (+events, step)",
    repository._CLAIM_ONE_SQL: "claim one",
    repository._CLAIM_DUE_SQL: "claim due",
}


def _label(statement: str) -> str:
    known = _KNOWN.get(statement)
    if known:
        return known
    return " ".join(statement.split())[:70]


def _writes(statement: str) -> bool:
    head = statement.upper()
    return any(word in head for word in ("INSERT ", "UPDATE ", "DELETE "))


class TxCounter:
    """Counts the transactions of one engine, each classified by the statements it ran."""

    def __init__(self) -> None:
        self.by_kind: Counter[str] = Counter()
        self.read_only: Counter[str] = Counter()
        self.commits = 0
        self.rollbacks = 0

    def attach(self, sync_engine: Any) -> None:
        event.listen(sync_engine, "begin", self._begin)
        event.listen(sync_engine, "before_cursor_execute", self._execute)
        event.listen(sync_engine, "commit", self._commit)
        event.listen(sync_engine, "rollback", self._rollback)

    def _begin(self, conn: Connection) -> None:
        conn.info["bench_stmts"] = []

    def _execute(self, conn: Connection, cursor: Any, statement: str, *rest: Any) -> None:
        conn.info.setdefault("bench_stmts", []).append(statement)

    def _finish(self, conn: Connection) -> None:
        stmts: list[str] = conn.info.pop("bench_stmts", [])
        if not stmts:
            return
        if any(_writes(s) for s in stmts):
            self.by_kind[" + ".join(_label(s) for s in stmts)] += 1
        else:
            self.read_only[" + ".join(_label(s) for s in stmts)] += 1

    def _commit(self, conn: Connection) -> None:
        self.commits += 1
        self._finish(conn)

    def _rollback(self, conn: Connection) -> None:
        self.rollbacks += 1
        self._finish(conn)


def server_counters(dbname: str, host: str, port: int) -> dict[str, float]:
    """Flushed statistics of the bench database and the cluster's WAL (read from `postgres`)."""
    with psycopg.connect(common.admin_dsn(host=host, port=port), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        db = conn.execute(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s",
            (dbname,),
        ).fetchone()
        wal = conn.execute("SELECT wal_sync, wal_records, wal_bytes FROM pg_stat_wal").fetchone()
    assert db is not None and wal is not None
    return {
        "xact_commit": float(db[0]),
        "xact_rollback": float(db[1]),
        "wal_sync": float(wal[0]),
        "wal_records": float(wal[1]),
        "wal_bytes": float(wal[2]),
    }


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


@contextlib.contextmanager
def private_cluster(port: int) -> Iterator[tuple[str, int]]:
    """A throw-away cluster of the system's PostgreSQL (run as user postgres), default config."""
    bindir = subprocess.run(
        ["pg_config", "--bindir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    data = tempfile.mkdtemp(prefix="bench_pgdata_")
    shutil.chown(data, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_pg, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*as_pg, f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-w", "-l", f"{data}/log", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield "127.0.0.1", port
    finally:
        subprocess.run(
            [*as_pg, f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


async def _settle(engine: Any) -> None:
    """Close every pooled connection: exiting backends flush their pending statistics."""
    await engine.dispose()
    await asyncio.sleep(1.5)


async def measure(args: argparse.Namespace, host: str, port: int) -> dict[str, Any]:
    with (
        SandboxServer(SandboxConfig(latency_ms=args.latency_ms)) as sandbox,
        scratch_database("bench_commits", host=host, port=port) as (dbname, db_url),
    ):
        control = SandboxControl(sandbox.control_url)
        engine = database.create_engine(db_url)
        counter = TxCounter()
        counter.attach(engine.sync_engine)
        client = violet_client(sandbox.base_url)
        orch = await Orchestrator(
            bench_settings(db_url, sandbox.base_url), client=client, engine=engine
        ).open()
        await client.login()

        async def one() -> bool:
            checkout = await orch.start(checkout_request("commits"))
            return checkout.state == "submitted"

        await run_closed_loop(one, 20, min(args.concurrency, 20))  # warm-up
        await _settle(engine)

        started = time.perf_counter()
        await control.reset()
        counter.__init__()  # type: ignore[misc]
        before = server_counters(dbname, host, port)
        watch, _, failures = await run_closed_loop(one, args.n, args.concurrency)
        stats = await control.stats()
        await _settle(engine)
        after = server_counters(dbname, host, port)
        run_s = time.perf_counter() - started
        # An idle window as long as the run: what the rest of the cluster adds meanwhile.
        idle_before = server_counters(dbname, host, port)
        await asyncio.sleep(run_s)
        idle_after = server_counters(dbname, host, port)
        await orch.close()
        await engine.dispose()
        await client.aclose()
        await control.aclose()

    n = args.n
    run = _delta(after, before)
    idle = _delta(idle_after, idle_before)
    calls = {k: v for k, v in stats["calls_by_op"].items() if k not in ("login", "refresh")}
    violet_calls = sum(calls.values()) / n
    durable = sum(counter.by_kind.values()) / n
    return {
        "n": n,
        "concurrency": args.concurrency,
        "latency_ms": args.latency_ms,
        "failures": failures,
        "wall_s": watch.wall,
        "violet_calls_per_checkout": violet_calls,
        "violet_calls_by_op": calls,
        "client_write_commits_per_checkout": durable,
        "client_read_only_tx_per_checkout": sum(counter.read_only.values()) / n,
        "client_commits": counter.commits,
        "client_rollbacks": counter.rollbacks,
        "write_tx_by_statement": {k: v / n for k, v in counter.by_kind.most_common()},
        "read_only_tx_by_statement": {k: v / n for k, v in counter.read_only.most_common()},
        "server_xact_commit_per_checkout": run["xact_commit"] / n,
        "server_xact_rollback_per_checkout": run["xact_rollback"] / n,
        "wal_sync_per_checkout": run["wal_sync"] / n,
        "wal_records_per_checkout": run["wal_records"] / n,
        "wal_bytes_per_checkout": run["wal_bytes"] / n,
        "idle_window_wal_sync_per_checkout_equiv": idle["wal_sync"] / n,
        "idle_window_xact_commit": idle["xact_commit"],
        "bar_durable_commits_le_calls_plus_1": durable <= violet_calls + 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.commits", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=0, help="checkouts (default 200 quick, 1000)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--private-cluster", action="store_true", help="own initdb'd cluster: exact WAL counters"
    )
    parser.add_argument("--private-port", type=int, default=55439)
    args = parser.parse_args()
    args.n = args.n or (200 if args.quick else 1000)
    logging.basicConfig(level=logging.WARNING)
    info = machine_info()
    results: dict[str, Any] = {}
    results["shared"] = asyncio.run(measure(args, common.PG_HOST, common.PG_PORT))
    if args.private_cluster:
        with private_cluster(args.private_port) as (host, port):
            results["private"] = asyncio.run(measure(args, host, port))

    keys = [
        "violet_calls_per_checkout",
        "client_write_commits_per_checkout",
        "client_read_only_tx_per_checkout",
        "server_xact_commit_per_checkout",
        "server_xact_rollback_per_checkout",
        "wal_sync_per_checkout",
        "idle_window_wal_sync_per_checkout_equiv",
        "wal_records_per_checkout",
        "wal_bytes_per_checkout",
        "failures",
        "bar_durable_commits_le_calls_plus_1",
    ]
    headers = ["per checkout", *results]
    rows = [[k, *(results[c][k] for c in results)] for k in keys]
    print(table(headers, rows))
    for where, res in results.items():
        print(f"\n[{where}] write transactions per checkout, by statement:")
        for k, v in res["write_tx_by_statement"].items():
            print(f"  {v:6.2f}  {k}")
        print(f"[{where}] read-only transactions per checkout:")
        for k, v in res["read_only_tx_by_statement"].items():
            print(f"  {v:6.2f}  {k}")
        if not res["read_only_tx_by_statement"]:
            print("  none")
        print(f"[{where}] Violet calls by op (total): {res['violet_calls_by_op']}")
    payload = {
        "bench": "commits",
        "mode": "quick" if args.quick else "full",
        "machine": info,
        "results": results,
        "markdown": markdown_table(headers, rows, digits=3),
    }
    path = write_results("commits" + ("_quick" if args.quick else ""), payload)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
