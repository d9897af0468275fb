"""The CLI's exit codes for outcomes Violet settles late: an order Violet took while PROCESSING
is `submitted` (exit 0) and `verify` finds no drift, whether the submit's answer or a later read
saw it processing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from orchestrator.cli.app import ExitCode
from tests.cli.conftest import Cli
from tests.fixtures.orchestrator import TOKEN, TWO_MERCHANTS, checkout_request


@pytest.fixture
def processing(cli: Cli) -> Iterator[Callable[[float], None]]:
    """Set how long the session's sandbox keeps submitted orders PROCESSING (restored after)."""

    def configure(milliseconds: float) -> None:
        url = f"{cli.sandbox.control_url}/config"
        httpx.post(url, json={"processing_ms": milliseconds}, timeout=10).raise_for_status()

    yield configure
    configure(cli.sandbox.config.processing_ms)


def _verify_agrees(cli: Cli) -> None:
    verified = cli.invoke("verify", "--json")
    assert verified.exit_code == ExitCode.OK, verified.output
    assert json.loads(verified.stdout)["drift"] == 0


def test_start_exits_0_with_an_order_violet_answered_while_processing(
    cli: Cli, processing: Callable[[float], None]
) -> None:
    processing(300)
    request = checkout_request(skus=TWO_MERCHANTS, payment=TOKEN)
    started = cli.invoke("checkout", "start", str(cli.write_request(request)), "--json")
    assert started.exit_code == ExitCode.OK, started.output
    checkout = json.loads(started.stdout)
    assert checkout["state"] == "submitted"
    assert [bag["status"] for bag in checkout["bags"]] == ["ACCEPTED", "ACCEPTED"]
    assert cli.submits(checkout["violet_order_id"]) == 1
    _verify_agrees(cli)


def test_run_exits_0_when_the_read_after_a_lost_answer_finds_the_order_processing(
    cli: Cli, processing: Callable[[float], None]
) -> None:
    processing(1500)
    fault = {"op": "submit", "kind": "drop_after_apply", "count": 1}
    httpx.post(f"{cli.sandbox.control_url}/faults", json=fault, timeout=10).raise_for_status()
    request = checkout_request(skus=TWO_MERCHANTS, payment=TOKEN)
    started = cli.invoke("checkout", "start", str(cli.write_request(request)), "--json")
    assert started.exit_code == ExitCode.UNAVAILABLE, started.output  # the answer was lost
    assert json.loads(started.stdout)["in_flight"] is True
    ran = cli.invoke("checkout", "run", request["app_order_id"], "--wait", "5", "--json")
    assert ran.exit_code == ExitCode.OK, ran.output
    checkout = json.loads(ran.stdout)
    assert checkout["state"] == "submitted"
    assert [bag["status"] for bag in checkout["bags"]] == ["ACCEPTED", "ACCEPTED"]
    audit = json.loads(cli.invoke("audit", request["app_order_id"], "--json").stdout)
    decisions = [e["detail"]["decision"] for e in audit["events"] if e["kind"] == "reconciled"]
    assert decisions[0] == "pending"  # the read found it PROCESSING and waited for it
    assert cli.submits(checkout["violet_order_id"]) == 1
    _verify_agrees(cli)
