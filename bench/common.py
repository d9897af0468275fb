"""What every benchmark shares: scratch databases, the sandbox, settings, stats and output.

The machine is small and shared, so absolute figures drift from run to run; every bench reports
ratios against a baseline measured in the same run, with contenders interleaved, and records the
machine beside the numbers.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import random
import statistics
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from orchestrator.config import Settings
from orchestrator.sandbox import SANDBOX_CREDENTIALS

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
RESULTS_DIR = Path(__file__).resolve().parent / "results"

ADDRESS = {
    "address_1": "1 Main St",
    "city": "Brooklyn",
    "state": "NY",
    "postal_code": "11211",
    "country": "US",
    "phone": "5555550100",
}
CUSTOMER = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}
TOKEN_PAYMENT = {"type": "token", "token": "tok_visa", "provider": "STRIPE"}
PHYSICAL_SKU = 196777


def admin_dsn(dbname: str = "postgres", host: str = PG_HOST, port: int = PG_PORT) -> str:
    return f"host={host} port={port} user={PG_USER} dbname={dbname}"


def database_url(dbname: str, host: str = PG_HOST, port: int = PG_PORT) -> str:
    return f"postgresql+psycopg://{PG_USER}@{host}:{port}/{dbname}"


@contextlib.contextmanager
def scratch_database(
    prefix: str = "bench", *, migrate: bool = True, host: str = PG_HOST, port: int = PG_PORT
) -> Iterator[tuple[str, str]]:
    """A fresh database (migrated), dropped on exit; yields (name, SQLAlchemy URL)."""
    from orchestrator.store.database import migrate as run_migrations

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn(host=host, port=port), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url(name, host, port)
    try:
        if migrate:
            run_migrations(url)
        yield name, url
    finally:
        with psycopg.connect(admin_dsn(host=host, port=port), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_settings(db_url: str, violet_base_url: str, **overrides: Any) -> Settings:
    """Settings for a bench: production defaults except the sandbox credentials."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "violet_base_url": violet_base_url,
        "violet_app_id": SANDBOX_CREDENTIALS["app_id"],
        "violet_app_secret": SANDBOX_CREDENTIALS["app_secret"],
        "violet_username": SANDBOX_CREDENTIALS["username"],
        "violet_password": SANDBOX_CREDENTIALS["password"],
    }
    values.update(overrides)
    return Settings(**values)


def order_id(tag: str) -> str:
    """A fresh app_order_id of letters only.

    Hex ids sometimes hold a Luhn-valid run of 13+ digits, which the card tripwire (rightly, by
    its rule) refuses: about 1 checkout in 1,000 failed that way in the first runs.
    """
    return f"{tag}-{''.join(random.choices(string.ascii_lowercase, k=20))}"


def checkout_request(tag: str = "bench") -> dict[str, Any]:
    """A token-paid checkout of one physical SKU (7 Violet calls) with a fresh app_order_id."""
    return {
        "app_order_id": order_id(tag),
        "currency": "USD",
        "skus": [{"sku_id": PHYSICAL_SKU, "quantity": 1}],
        "customer": CUSTOMER,
        "shipping_address": ADDRESS,
        "billing_address": None,
        "shipping": {"policy": "cheapest"},
        "payment": TOKEN_PAYMENT,
    }


# -- statistics ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


@dataclass
class Stopwatch:
    """Wall and process CPU time over a block (CPU of every thread of this process), and what
    the cyclic GC spent in it: collections per generation and their time (a full collection
    of a bench process stalls every checkout in flight for tens of milliseconds)."""

    wall: float = 0.0
    cpu: float = 0.0
    gc_s: float = 0.0
    gc_collections: list[int] = field(default_factory=lambda: [0, 0, 0])

    @contextlib.contextmanager
    def run(self) -> Iterator[Stopwatch]:
        self.gc_s, self.gc_collections = 0.0, [0, 0, 0]
        started = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                self.gc_s += time.perf_counter() - started[0]
                self.gc_collections[info["generation"]] += 1

        gc.callbacks.append(on_gc)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        try:
            yield self
        finally:
            self.wall = time.perf_counter() - wall0
            self.cpu = time.process_time() - cpu0
            gc.callbacks.remove(on_gc)


# -- machine and output -------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (the sandbox server, say)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def postgres_cpu_s() -> float:
    """User + system CPU seconds of every process named postgres on this machine, plus the
    children's times the postmaster collected from backends that have exited (a recover
    process's backends end with it): deltas show what PostgreSQL spent during a run."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["name", "cpu_times"]):
        times = proc.info["cpu_times"]
        if proc.info["name"] and "postgres" in proc.info["name"] and times:
            total += times.user + times.system + times.children_user + times.children_system
    return total


def pg_version(host: str = PG_HOST, port: int = PG_PORT) -> str:
    with psycopg.connect(admin_dsn(host=host, port=port)) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def source_version() -> dict[str, Any]:
    """The commit measured, and whether the library had uncommitted changes (shared tree)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        except OSError:
            return "?"
        return out.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "orchestrator_dirty": sorted(
            git("status", "--porcelain", "--", "orchestrator").splitlines()
        ),
    }


def machine_info() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cores": os.cpu_count(),
        "postgres": pg_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source_version(),
    }


def save_results(bench: str, quick: bool, payload: dict[str, Any]) -> Path:
    """Write `<bench>[_quick].json` with the bench name and mode first, and say where."""
    path = write_results(
        bench + ("_quick" if quick else ""),
        {"bench": bench, "mode": "quick" if quick else "full", **payload},
    )
    print(f"\nwrote {path}")
    return path


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    """A plain fixed-width table (also pasteable into Markdown as a code block)."""
    cells = [[fmt(v, digits) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v, digits) for v in row) + " |" for row in rows]
    return "\n".join(lines)
