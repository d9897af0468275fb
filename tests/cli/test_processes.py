"""The CLI as real processes (`python -m orchestrator ...`): what a user's shell or cron sees,
including `orchestrator demo` on a test database and on its own embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from orchestrator.sandbox import SANDBOX_CREDENTIALS
from orchestrator.violet import SkuLine, VioletClient
from tests.cli.conftest import Cli, clean_environment
from tests.fixtures.orchestrator import TOKEN, checkout_request

ANSI = re.compile(r"\x1b\[")
EXPECTED_DEMO = {
    "single": "submitted",
    "multi": "submitted",
    "partial": "submitted",
    "declined": "failed",
    "3ds": "submitted",
    "intent": "submitted",
    "crash": "submitted",
}


def _processes_with(marker: str) -> list[str]:
    """Live processes whose environment carries `marker` (so: started by the run under test)."""
    found = []
    for process in psutil.process_iter(["pid", "name"]):
        try:
            if process.environ().get("ORCH_TEST_MARKER") == marker:
                found.append(f"{process.info['pid']} {process.info['name']}")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def test_start_and_status_as_processes_print_json_and_plain_text(cli: Cli) -> None:
    request = checkout_request(payment=TOKEN)
    started = cli.run("checkout", "start", str(cli.write_request(request)), "--json")
    assert started.returncode == 0, started.stderr
    document = json.loads(started.stdout)
    assert document["state"] == "submitted"
    assert document["app_order_id"] == request["app_order_id"]

    status = cli.run("status", request["app_order_id"])
    assert status.returncode == 0, status.stderr
    assert not ANSI.search(status.stdout) and not ANSI.search(status.stderr)
    assert re.search(r"^state:\s+submitted$", status.stdout, re.MULTILINE)

    missing = cli.run("audit", "no-such-order")
    assert missing.returncode == 4
    assert missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1


def _run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-m", "orchestrator", "demo", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def _check_demo(completed_stdout: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(completed_stdout)
    assert summary["ok"] is True, summary
    outcomes = {c["scenario"]: c for c in summary["checkouts"]}
    assert {name: c["state"] for name, c in outcomes.items()} == EXPECTED_DEMO
    assert all(c["ok"] for c in outcomes.values())
    crash = outcomes["crash"]
    assert crash["lease_taken_over"] and crash["reconciled"]
    assert crash["submits_at_violet"] == 1
    assert outcomes["partial"]["partially_accepted"] is True
    assert outcomes["declined"]["last_error_type"] == "card_declined"
    assert outcomes["declined"]["submits_at_violet"] == 0
    _check_after_submit(summary["after_submit"], outcomes["multi"])
    return summary


def _check_after_submit(late: dict[str, Any], multi: dict[str, Any]) -> None:
    """The two-merchant order's bags after submit: one shipped and completed by its merchant,
    the other refunded through the library once, each as the applied webhooks recorded it."""
    assert late["ok"] is True, late
    assert late["app_order_id"] == multi["app_order_id"]
    bags = {b["bag_id"]: b for b in late["bags"]}
    assert set(bags) == {late["shipped_bag"], late["refunded_bag"]}
    shipped, refunded = bags[late["shipped_bag"]], bags[late["refunded_bag"]]
    assert (shipped["status"], shipped["fulfillment_status"]) == ("COMPLETED", "SHIPPED")
    assert refunded["status"] == "REFUNDED" and refunded["refunded_amount"] > 0
    assert late["refund"]["state"] == "succeeded" and late["refund"]["actor"] == "demo"
    assert late["refunds_at_violet"] == 1
    assert late["webhooks_delivered"] == late["webhooks_applied"] == 3
    assert late["events"].count("webhook_applied") == 3
    assert {"bag_action_requested", "bag_action_sent", "bag_action_settled"} <= set(late["events"])
    feed = [(c["kind"], (c["detail"] or {}).get("to")) for c in late["changes"]]
    assert feed[0] == ("checkout_finished", None)
    assert ("bag_status", "COMPLETED") in feed and ("bag_status", "REFUNDED") in feed
    assert ("action_settled", None) in feed


def test_demo_on_a_test_database_ends_cleanly_and_runs_again(
    database_url: str, tmp_path: Path
) -> None:
    """Twice on one database: the second run's fresh sandbox must not reuse the first's cart ids."""
    marker = uuid.uuid4().hex
    env = clean_environment(
        ORCHESTRATOR_DATABASE_URL=database_url,
        ORCHESTRATOR_DATA_DIR=str(tmp_path),
        ORCH_TEST_MARKER=marker,
    )
    for _ in range(2):
        completed = _run_demo(env)
        _check_demo(completed.stdout)
        assert "4242424242424242" not in completed.stdout + completed.stderr
        assert _processes_with(marker) == []


@pytest.mark.slow
def test_demo_on_its_own_embedded_postgres_ends_cleanly(tmp_path: Path) -> None:
    """No ORCHESTRATOR_DATABASE_URL: the demo starts (and stops) an embedded PostgreSQL."""
    marker = uuid.uuid4().hex
    env = clean_environment(ORCHESTRATOR_DATA_DIR=str(tmp_path), ORCH_TEST_MARKER=marker)
    summary = _check_demo(_run_demo(env).stdout)
    assert str(tmp_path) in str(summary["inspect_hint"])
    assert (tmp_path / "demo" / "pgdata").is_dir()
    assert _processes_with(marker) == []


async def test_sandbox_serve_hands_out_cart_ids_from_first_cart_id() -> None:
    """In front of a database that keeps earlier checkouts, ids must start above theirs."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestrator", "sandbox", "serve", "--port", "0",
        "--first-cart-id", "912345",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=clean_environment(),
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), 30)
        announced = re.search(r"(http://\S+/v1)", line.decode())
        assert announced, "the sandbox did not announce its URL"
        skus = [SkuLine(sku_id=196777, quantity=1)]
        async with VioletClient(base_url=announced.group(1), **SANDBOX_CREDENTIALS) as violet:
            ids = [(await violet.create_cart(skus=skus, app_order_id=f"fc-{i}")).id for i in (1, 2)]
        assert ids == [912345, 912346]
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 30)
