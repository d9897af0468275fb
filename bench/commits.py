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
- write transactions: the xids assigned over the run (only writing transactions get one), so
  read-only transactions = commits - xids (exact on the private cluster);
- with --log-statements (private cluster), every statement per checkout from the server log,
  BEGIN/COMMIT included;
- Violet calls per checkout from the sandbox's `calls_by_op`.
Bar: durable (writing) commits per checkout <= Violet calls per checkout + 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from bench import common
from bench.common import (
    bench_settings,
    checkout_request,
    machine_info,
    markdown_table,
    save_results,
    scratch_database,
    table,
)
from bench.throughput import run_closed_loop, violet_client
from orchestrator.api import Orchestrator
from orchestrator.sandbox import SandboxConfig, SandboxControl, SandboxServer
from orchestrator.store import database


def _writes(query: str) -> bool:
    text = query.upper()
    return any(word in text for word in ("INSERT ", "UPDATE ", "DELETE "))


def server_counters(dbname: str, host: str, port: int) -> dict[str, float]:
    """Flushed statistics of the bench database and the cluster's WAL (read from `postgres`)."""
    with psycopg.connect(common.admin_dsn(host=host, port=port), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        db = conn.execute(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s",
            (dbname,),
        ).fetchone()
        wal = conn.execute("SELECT wal_sync, wal_records, wal_bytes FROM pg_stat_wal").fetchone()
        # xids are assigned only to transactions that write: their count is the durable commits.
        xid = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()
    assert db is not None and wal is not None and xid is not None
    return {
        "xids": float(xid[0]),
        "xact_commit": float(db[0]),
        "xact_rollback": float(db[1]),
        "wal_sync": float(wal[0]),
        "wal_records": float(wal[1]),
        "wal_bytes": float(wal[2]),
    }


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


@contextlib.contextmanager
def private_cluster(port: int, *, log_statements: bool = False) -> Iterator[tuple[str, int, str]]:
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
    if log_statements:
        opts += (
            " -c log_min_duration_statement=0 -c log_line_prefix=%d@@"
            " -c shared_preload_libraries=auto_explain -c auto_explain.log_min_duration=0"
            " -c auto_explain.log_analyze=on -c auto_explain.log_triggers=on"
            " -c auto_explain.log_timing=on"
        )
    # pg_ctl hands -o to a shell: no metacharacters in opts; no captured stdout (the server
    # would inherit the pipe and the wait would never end).
    subprocess.run(
        [*as_pg, f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-w", "-l", f"{data}/log", "start"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield "127.0.0.1", port, data
    finally:
        subprocess.run(
            [*as_pg, f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        if log_statements:
            shutil.copy(f"{data}/log", Path(tempfile.gettempdir()) / "bench_commits_private.log")
        shutil.rmtree(data, ignore_errors=True)


async def _settle(engine: Any, orch: Orchestrator | None = None) -> None:
    """Close every pooled connection: exiting backends flush their pending statistics."""
    pool = getattr(orch, "_pool", None)
    if pool is not None:  # the orchestrator's own psycopg pool, when it has one
        await pool.close()
    await engine.dispose()
    await asyncio.sleep(1.5)


def _mark(dbname: str, host: str, port: int, what: str) -> None:
    """A logged marker statement in the bench database: the measured window's edges."""
    with psycopg.connect(common.admin_dsn(dbname, host=host, port=port), autocommit=True) as conn:
        conn.execute(f"SELECT 'bench-window-{what}'")


def _label(query: str) -> str:
    text = " ".join(query.split())
    for marker in ("UPDATE checkouts", "INSERT INTO checkouts", "FROM checkouts"):
        if marker in text:
            at = text.index(marker)
            return ("WITH ... " if at else "") + text[at : at + 60]
    return text[:70]


async def measure(args: argparse.Namespace, host: str, port: int, private: bool) -> dict[str, Any]:
    with (
        SandboxServer(SandboxConfig(latency_ms=args.latency_ms)) as sandbox,
        scratch_database("bench_commits", host=host, port=port) as (dbname, db_url),
    ):
        control = SandboxControl(sandbox.control_url)
        engine = database.create_engine(db_url)
        client = violet_client(sandbox.base_url)
        settings = bench_settings(db_url, sandbox.base_url)
        orch = await Orchestrator(settings, client=client, engine=engine).open()
        await client.login()

        async def one() -> bool:
            checkout = await orch.start(checkout_request("commits"))
            return checkout.state == "submitted"

        await run_closed_loop(one, 20, min(args.concurrency, 20))  # warm-up
        await orch.close()
        await _settle(engine)
        # Reopen: the orchestrator's connections are made before the measured window.
        client = violet_client(sandbox.base_url)
        orch = await Orchestrator(settings, client=client, engine=engine).open()
        await client.login()
        await run_closed_loop(one, 1, 1)
        await control.reset()
        _mark(dbname, host, port, "start")
        before = server_counters(dbname, host, port)
        started = time.perf_counter()
        watch, _, failures = await run_closed_loop(one, args.n, args.concurrency)
        stats = await control.stats()
        await _settle(engine, orch)
        after = server_counters(dbname, host, port)
        _mark(dbname, host, port, "end")
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
    # The admin connection's reads above run in `postgres`, not in the bench database.
    write_tx = run["xids"] / n
    commits = run["xact_commit"] / n
    return {
        "where": "private cluster" if private else "shared server",
        "n": n,
        "concurrency": args.concurrency,
        "latency_ms": args.latency_ms,
        "failures": failures,
        "wall_s": watch.wall,
        "violet_calls_per_checkout": violet_calls,
        "violet_calls_by_op": calls,
        "commits_per_checkout": commits,
        "write_commits_per_checkout": write_tx,
        "read_only_commits_per_checkout": commits - write_tx,
        "rollbacks_per_checkout": run["xact_rollback"] / n,
        "wal_sync_per_checkout": run["wal_sync"] / n,
        "wal_records_per_checkout": run["wal_records"] / n,
        "wal_bytes_per_checkout": run["wal_bytes"] / n,
        "idle_window_xids_per_checkout_equiv": idle["xids"] / n,
        "idle_window_wal_sync_per_checkout_equiv": idle["wal_sync"] / n,
        "bar_durable_commits_le_calls_plus_1": write_tx <= violet_calls + 1,
    }


# Extended protocol logs parse, bind and execute separately: only an execute (or a simple
# statement) is one statement run.
_DURATION = re.compile(r"duration: ([0-9.]+) ms\s+(?:execute [^:]*|statement):")


_TRIGGER = re.compile(r"Trigger (?:for constraint )?(\S+) on \S+: (?:time=([0-9.]+) )?calls=(\d+)")


def trigger_times(path: str, n: int) -> dict[str, dict[str, float]]:
    """Per checkout: trigger calls and their time, from auto_explain plans in the window."""
    out: dict[str, dict[str, float]] = {}
    inside = False
    with open(path, errors="replace") as log:
        for line in log:
            if "bench-window-start" in line:
                inside = True
            elif "bench-window-end" in line:
                inside = False
            elif inside:
                match = _TRIGGER.search(line)
                if match:
                    item = out.setdefault(match.group(1), {"calls": 0.0, "ms": 0.0})
                    item["calls"] += int(match.group(3)) / n
                    item["ms"] += float(match.group(2) or 0.0) / n
    return out


def logged_statements(path: str, n: int) -> dict[str, dict[str, float]]:
    """Statements per checkout in the measured window and their mean server time, from the log
    (log_min_duration_statement=0: one line per statement with its execution time)."""
    entries: list[tuple[float, str]] = []
    with open(path, errors="replace") as log:
        for line in log:
            db, sep, rest = line.partition("@@")
            if sep and "LOG:" in rest:
                text = rest.split("LOG:", 1)[1].strip()
                match = _DURATION.match(text)
                if db.startswith("bench_") and match:
                    # "sql:" keeps the entry open: the SQL often starts on the next line.
                    entries.append((float(match.group(1)), "sql:" + text[match.end() :].strip()))
                else:
                    entries.append((0.0, ""))
            elif entries and entries[-1][1]:
                ms, text = entries[-1]
                entries[-1] = (ms, text + " " + line.strip())  # continuation line
    out: dict[str, dict[str, float]] = {}
    inside = False
    for ms, entry in entries:
        text = entry.removeprefix("sql:").strip()
        if "bench-window-start" in text:
            inside = True
        elif "bench-window-end" in text:
            inside = False
        elif inside and text:
            item = out.setdefault(_label(text), {"per_checkout": 0.0, "server_ms_total": 0.0})
            item["per_checkout"] += 1.0 / n
            item["server_ms_total"] += ms
    for item in out.values():
        item["server_ms_mean"] = item["server_ms_total"] / max(1.0, item["per_checkout"] * n)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["per_checkout"]))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.commits", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=0, help="checkouts (default 200 quick, 1000)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--private-cluster", action="store_true", help="also on an initdb'd cluster: exact counts"
    )
    parser.add_argument("--private-port", type=int, default=55439)
    parser.add_argument(
        "--log-statements", action="store_true", help="private cluster: log and count statements"
    )
    args = parser.parse_args()
    args.n = args.n or (200 if args.quick else 1000)
    logging.basicConfig(level=logging.WARNING)
    info = machine_info()
    results: dict[str, Any] = {}
    results["shared"] = asyncio.run(measure(args, common.PG_HOST, common.PG_PORT, False))
    if args.private_cluster:
        with private_cluster(args.private_port, log_statements=args.log_statements) as (
            host,
            port,
            data,
        ):
            results["private"] = asyncio.run(measure(args, host, port, True))
            if args.log_statements:
                results["private"]["statements_per_checkout"] = logged_statements(
                    f"{data}/log", args.n
                )
                results["private"]["triggers_per_checkout"] = trigger_times(f"{data}/log", args.n)

    keys = [
        "violet_calls_per_checkout",
        "commits_per_checkout",
        "write_commits_per_checkout",
        "read_only_commits_per_checkout",
        "rollbacks_per_checkout",
        "wal_sync_per_checkout",
        "wal_records_per_checkout",
        "wal_bytes_per_checkout",
        "idle_window_xids_per_checkout_equiv",
        "idle_window_wal_sync_per_checkout_equiv",
        "failures",
        "bar_durable_commits_le_calls_plus_1",
    ]
    headers = ["per checkout", *results]
    rows = [[k, *(results[c][k] for c in results)] for k in keys]
    print(table(headers, rows))
    for where, res in results.items():
        if res.get("statements_per_checkout"):
            print(f"\n[{where}] statements per checkout (server log):")
            for k, v in res["statements_per_checkout"].items():
                print(
                    f"  {v['per_checkout']:6.2f}  {'W' if _writes(k) else 'R'}  "
                    f"{v['server_ms_mean']:6.3f} ms  {k}"
                )
        for name, t in res.get("triggers_per_checkout", {}).items():
            print(f"  trigger {name}: {t['calls']:.1f} calls, {t['ms']:.3f} ms per checkout")
        print(f"[{where}] Violet calls by op (total): {res['violet_calls_by_op']}")
    payload = {
        "machine": info,
        "results": results,
        "markdown": markdown_table(headers, rows, digits=3),
    }
    save_results("commits", args.quick, payload)


if __name__ == "__main__":
    main()
