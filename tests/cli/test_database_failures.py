"""The orchestrator's own database failing under a running command: the checkout is kept (never
failed), the command says so in one line and exits with a documented code, and recovery finishes
it once the database answers again. The outage is a TCP proxy the test cuts (the shared server
stays up); a blocked write is a row lock the test holds."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.cli.conftest import Cli
from tests.fixtures.db import libpq_url
from tests.fixtures.orchestrator import TOKEN, checkout_request
from tests.fixtures.tcp_proxy import CuttableProxy

LEASE_SECONDS = "2"


def _row(database_url: str, app_order_id: str) -> dict[str, Any] | None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        cur = conn.execute(
            "SELECT state, pending_step, in_flight, lease_owner, attempt, last_error "
            "FROM checkouts WHERE app_order_id = %s",
            (app_order_id,),
        )
        found = cur.fetchone()
        if found is None:
            return None
        names = [c.name for c in cur.description or []]
        return dict(zip(names, found, strict=True))


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll (to choose the moment to act, never to judge a result)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _slow(cli: Cli, op: str, latency_ms: float) -> None:
    response = httpx.post(
        f"{cli.sandbox.control_url}/faults",
        json={"op": op, "kind": "latency", "latency_ms": latency_ms, "count": 1},
        timeout=10,
    )
    response.raise_for_status()


def _popen(cli: Cli, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env={**cli.env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


@pytest.fixture
def proxy(database_url: str) -> Iterator[CuttableProxy]:
    if make_url(database_url).host is None:
        pytest.skip("the test database listens on a Unix socket only: nothing to proxy")
    with CuttableProxy.for_database(database_url) as proxy:
        yield proxy


def test_a_database_outage_under_checkout_start_keeps_the_checkout_and_exits_5(
    cli: Cli, database_url: str, proxy: CuttableProxy
) -> None:
    request = checkout_request(payment=TOKEN)
    path = str(cli.write_request(request))
    _slow(cli, "price", 1500)
    env = {
        "ORCHESTRATOR_DATABASE_URL": proxy.url_for(database_url),
        "ORCHESTRATOR_LEASE_SECONDS": LEASE_SECONDS,
    }
    started = _popen(cli, "checkout", "start", path, "--json", env=env)

    def pricing() -> bool:
        row = _row(database_url, request["app_order_id"])
        return row is not None and row["pending_step"] == "price" and row["in_flight"]

    try:
        _wait_for(pricing, "the price call")
        proxy.cut()  # the database is gone while Violet prices the cart
        _, stderr = started.communicate(timeout=120)
    finally:
        started.kill()
    assert started.returncode == 5, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "kept" in lines[0] and "orchestrator recover" in lines[0], lines[0]
    row = _row(database_url, request["app_order_id"])
    assert row is not None and row["state"] not in ("failed", "submitted", "canceled"), row

    proxy.restore()
    recovered = cli.run("recover", "--until-idle", "--json", env=env)
    assert recovered.returncode == 0, recovered.stderr
    status = json.loads(cli.run("status", request["app_order_id"], "--json").stdout)
    assert status["state"] == "submitted"
    assert cli.submits(status["violet_order_id"]) == 1


def test_a_step_write_blocked_by_a_held_row_lock_times_out_and_recovery_resumes_it(
    cli: Cli, database_url: str
) -> None:
    request = checkout_request(payment=TOKEN)
    registered = cli.invoke("checkout", "start", str(cli.write_request(request)), "--no-run")
    assert registered.exit_code == 0, registered.output
    _slow(cli, "create_cart", 1500)
    env = {"ORCHESTRATOR_DB_LOCK_TIMEOUT": "0.5", "ORCHESTRATOR_LEASE_SECONDS": LEASE_SECONDS}
    recovering = _popen(cli, "recover", "--once", "--json", env=env)

    def creating_cart() -> bool:
        row = _row(database_url, request["app_order_id"])
        return row is not None and row["in_flight"] and row["lease_owner"] is not None

    try:
        _wait_for(creating_cart, "the create_cart call")
        # Another actor holds the row until the worker gave up on its write (or 20 s passed:
        # without a lock timeout the worker would wait for as long as the lock is held).
        with psycopg.connect(libpq_url(database_url)) as holder:
            holder.execute(
                "SELECT 1 FROM checkouts WHERE app_order_id = %s FOR UPDATE",
                (request["app_order_id"],),
            )
            with contextlib.suppress(subprocess.TimeoutExpired):
                recovering.wait(timeout=20)
            holder.rollback()
        _, stderr = recovering.communicate(timeout=60)
    finally:
        recovering.kill()
    assert recovering.returncode == 5, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "database" in errors[0] and "kept" in errors[0], stderr
    row = _row(database_url, request["app_order_id"])
    assert row is not None and row["state"] == "new" and row["in_flight"], row

    recovered = cli.run("recover", "--until-idle", "--json", env=env)
    assert recovered.returncode == 0, recovered.stderr
    status = json.loads(cli.run("status", request["app_order_id"], "--json").stdout)
    assert status["state"] == "submitted"
    assert cli.submits(status["violet_order_id"]) == 1


def test_a_drive_a_database_error_interrupts_and_the_same_run_finishes_is_not_reported(
    cli: Cli, database_url: str
) -> None:
    request = checkout_request(payment=TOKEN)
    registered = cli.invoke("checkout", "start", str(cli.write_request(request)), "--no-run")
    assert registered.exit_code == 0, registered.output
    _slow(cli, "create_cart", 1500)
    env = {"ORCHESTRATOR_DB_LOCK_TIMEOUT": "0.5", "ORCHESTRATOR_LEASE_SECONDS": LEASE_SECONDS}
    recovering = _popen(cli, "recover", "--until-idle", "--json", env=env)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(recovering.stderr or []), daemon=True)
    reader.start()

    def creating_cart() -> bool:
        row = _row(database_url, request["app_order_id"])
        return row is not None and row["in_flight"] and row["lease_owner"] is not None

    try:
        _wait_for(creating_cart, "the create_cart call")
        # Another actor holds the row until the worker's write gave up on it; the run goes on,
        # claims the checkout again once its lease expired, and finishes it.
        with psycopg.connect(libpq_url(database_url)) as holder:
            holder.execute(
                "SELECT 1 FROM checkouts WHERE app_order_id = %s FOR UPDATE",
                (request["app_order_id"],),
            )
            _wait_for(lambda: any("database error" in line for line in stderr), "the drive error")
            holder.rollback()
        stdout, _ = recovering.communicate(timeout=120)
    finally:
        recovering.kill()
    reader.join(timeout=10)
    assert recovering.returncode == 0, "".join(stderr)
    assert json.loads(stdout)["submitted"] == 1
    status = json.loads(cli.run("status", request["app_order_id"], "--json").stdout)
    assert status["state"] == "submitted"
    assert cli.submits(status["violet_order_id"]) == 1
