"""`orchestrator cancel-bag`, `refund` and `bag-actions` against the test database and the HTTP
sandbox: JSON documents, the actor recorded, one line and a documented exit code per refusal."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from orchestrator.cli.app import ExitCode
from tests.cli.conftest import Cli
from tests.fixtures.db import run_sql
from tests.fixtures.orchestrator import TOKEN, checkout_request


def _submitted(cli: Cli) -> tuple[dict[str, Any], str]:
    started = cli.invoke(
        "checkout", "start", str(cli.write_request(checkout_request(payment=TOKEN))), "--json"
    )
    assert started.exit_code == ExitCode.OK, started.output
    checkout: dict[str, Any] = json.loads(started.stdout)
    return checkout, str(checkout["bags"][0]["bag_id"])


def _stats(cli: Cli) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{cli.sandbox.control_url}/stats", timeout=10).json()
    return stats


def _fault(cli: Cli, op: str, kind: str) -> None:
    spec = {"op": op, "kind": kind, "count": 1}
    httpx.post(f"{cli.sandbox.control_url}/faults", json=spec, timeout=10).raise_for_status()


def test_cancel_bag_prints_the_action_with_its_actor_and_sends_once(cli: Cli) -> None:
    checkout, bag = _submitted(cli)

    result = cli.invoke(
        "cancel-bag", checkout["app_order_id"], bag, "--actor", "support:ana", "--json"
    )

    assert result.exit_code == ExitCode.OK, result.output
    action = json.loads(result.stdout)
    assert (action["kind"], action["state"], action["actor"]) == (
        "cancel",
        "succeeded",
        "support:ana",
    )
    assert action["bag_id"] == int(bag) and action["requested_at"].endswith("Z")
    assert _stats(cli)["bag_cancels"] == {bag: 1}
    listed = cli.invoke("bag-actions", checkout["id"], "--json")
    assert listed.exit_code == ExitCode.OK
    assert [a["id"] for a in json.loads(listed.stdout)] == [action["id"]]
    text = cli.invoke("bag-actions", checkout["id"])
    assert "support:ana" in text.stdout and "succeeded" in text.stdout


def test_refund_by_amount_and_by_sku(cli: Cli) -> None:
    checkout, bag = _submitted(cli)
    part = cli.invoke("refund", checkout["id"], bag, "--actor", "ops", "--amount", "100", "--json")
    assert part.exit_code == ExitCode.OK, part.output
    assert json.loads(part.stdout)["state"] == "succeeded"
    sku = str(checkout_request()["skus"][0]["sku_id"])

    by_sku = cli.invoke("refund", checkout["id"], bag, "--actor", "ops", "--sku", f"{sku}:1")

    assert by_sku.exit_code == ExitCode.OK, by_sku.output
    assert "state:" in by_sku.stdout and "succeeded" in by_sku.stdout
    assert _stats(cli)["bag_refunds"] == {bag: 2}


def test_refusals_exit_with_their_code_and_one_line_naming_the_field(cli: Cli) -> None:
    checkout, bag = _submitted(cli)
    ref = checkout["id"]

    over = cli.invoke("refund", ref, bag, "--actor", "ops", "--amount", "99999999")
    assert over.exit_code == ExitCode.BAD_INPUT
    assert "amount" in over.stderr and len(over.stderr.strip().splitlines()) == 1
    both = cli.invoke("refund", ref, bag, "--actor", "ops", "--amount", "1", "--sku", "1:1")
    assert both.exit_code == ExitCode.BAD_INPUT and "--amount" in both.stderr
    bad_sku = cli.invoke("refund", ref, bag, "--actor", "ops", "--sku", "abc")
    assert bad_sku.exit_code == ExitCode.BAD_INPUT and "--sku" in bad_sku.stderr
    no_actor = cli.invoke("cancel-bag", ref, bag)
    assert no_actor.exit_code == ExitCode.BAD_INPUT and "--actor" in no_actor.output
    missing = cli.invoke("cancel-bag", "no-such-checkout", bag, "--actor", "ops")
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert _stats(cli)["bag_refunds"] == {} and _stats(cli)["bag_cancels"] == {}


def test_a_second_cancel_while_the_first_is_open_exits_2(cli: Cli) -> None:
    checkout, bag = _submitted(cli)
    _fault(cli, "cancel_bag", "silent_failure")
    first = cli.invoke("cancel-bag", checkout["id"], bag, "--actor", "a", "--json")
    assert first.exit_code == ExitCode.OK
    assert json.loads(first.stdout)["state"] == "sent"

    second = cli.invoke("cancel-bag", checkout["id"], bag, "--actor", "b")

    assert second.exit_code == ExitCode.BAD_INPUT
    assert "already has a cancel sent" in second.stderr
    assert _stats(cli)["bag_cancels"] == {bag: 1}


def test_a_checkout_whose_lease_is_held_exits_3_and_sends_nothing(cli: Cli) -> None:
    checkout, bag = _submitted(cli)
    asyncio.run(
        run_sql(
            cli.env["ORCHESTRATOR_DATABASE_URL"],
            "UPDATE checkouts SET lease_owner = 'webhook-applier', "
            "lease_expires_at = now() + interval '1 hour' WHERE id = %(id)s",
            {"id": checkout["id"]},
        )
    )

    busy = cli.invoke("cancel-bag", checkout["id"], bag, "--actor", "ops")

    assert busy.exit_code == ExitCode.BUSY, busy.output
    assert "webhook-applier" in busy.stderr
    assert _stats(cli)["bag_cancels"] == {}


def test_violet_refusing_the_cancel_exits_1_with_the_failed_action(cli: Cli) -> None:
    checkout, bag = _submitted(cli)
    url = f"{cli.sandbox.control_url}/orders/{checkout['violet_order_id']}/bags/{bag}/ship"
    httpx.post(url, json={}, timeout=10).raise_for_status()

    refused = cli.invoke("cancel-bag", checkout["id"], bag, "--actor", "ops", "--json")

    assert refused.exit_code == ExitCode.CHECKOUT_FAILED
    action = json.loads(refused.stdout)
    assert action["state"] == "failed" and action["error"]["type"] == "CANCELLATION_FAILURE"
