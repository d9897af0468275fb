"""`orchestrator readback` and `orchestrator webhooks apply` from the command line."""

from __future__ import annotations

import json

import httpx
import psycopg

from orchestrator.cli.app import ExitCode
from orchestrator.store import inbox
from tests.cli.conftest import Cli
from tests.fixtures.db import libpq_url
from tests.fixtures.orchestrator import TOKEN, checkout_request


def _start(cli: Cli) -> dict[str, object]:
    request = checkout_request(payment=TOKEN)
    started = cli.invoke("checkout", "start", str(cli.write_request(request)), "--json")
    assert started.exit_code == ExitCode.OK, started.output
    checkout: dict[str, object] = json.loads(started.stdout)
    assert checkout["state"] == "submitted"
    return checkout


def _bag_statuses(cli: Cli) -> list[str]:
    url = libpq_url(cli.env["ORCHESTRATOR_DATABASE_URL"])
    with psycopg.connect(url, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT status FROM checkout_bags ORDER BY bag_id")]


def test_readback_reads_stale_orders_within_its_budget(cli: Cli) -> None:
    _start(cli)
    none = cli.invoke("readback", "--budget", "0", "--json")
    assert none.exit_code == ExitCode.OK, none.output
    assert json.loads(none.stdout)["read"] == 0
    fresh = cli.invoke("readback", "--json")  # ORCHESTRATOR_READBACK_AFTER: an hour
    assert json.loads(fresh.stdout)["stale"] == 0

    read = cli.invoke("readback", "--older-than", "0", "--budget", "5", "--json")
    assert read.exit_code == ExitCode.OK, read.output
    assert {k: v for k, v in json.loads(read.stdout).items() if k != "duration_s"} == {
        "stale": 1,
        "read": 1,
        "changed": 1,
        "busy": 0,
        "unreadable": [],
    }
    assert _bag_statuses(cli) == ["ACCEPTED"]
    text = cli.invoke("readback", "--older-than", "0")
    assert text.stdout.startswith("read 1 of 1 stale orders: changed 0")


def test_webhooks_apply_applies_pending_events(cli: Cli) -> None:
    checkout = _start(cli)
    order_id = checkout["violet_order_id"]
    assert isinstance(order_id, int)
    order = httpx.get(f"{cli.sandbox.control_url}/carts/{order_id}", timeout=10).json()
    body = {"id": order_id, "status": "COMPLETED", "bags": order["bags"]}
    url = libpq_url(cli.env["ORCHESTRATOR_DATABASE_URL"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            inbox.INSERT_SQL,
            inbox.insert_params(inbox.InboxEvent("e1", "ORDER_UPDATED", body, order_id)),
        )
    applied = cli.invoke("webhooks", "apply", "--until-idle", "--json")
    assert applied.exit_code == ExitCode.OK, applied.output
    assert json.loads(applied.stdout) == {"applied": 1, "ignored": 0, "failed": 0, "retried": 0}
    assert _bag_statuses(cli) == ["ACCEPTED"]
    again = cli.invoke("webhooks", "apply")
    assert again.stdout.strip() == "applied=0 ignored=0 failed=0 retried=0"
