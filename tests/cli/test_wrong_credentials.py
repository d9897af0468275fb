"""Credentials Violet refuses at login are a configuration error, not a checkout's failure: the
checkout waits (due later, its attempt not used up), the command says so in one line and exits
5, and once the credentials are fixed recovery finishes it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.cli.conftest import Cli
from tests.fixtures.orchestrator import TOKEN, checkout_request

WRONG = {"VIOLET_APP_SECRET": "not-the-app-secret"}


def _status(cli: Cli, ref: str) -> dict[str, Any]:
    result = cli.invoke("status", ref, "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _kept_for_credentials(checkout: dict[str, Any]) -> None:
    assert checkout["state"] == "new", checkout
    assert checkout["attempt"] == 0, checkout
    assert checkout["finished_at"] is None and checkout["next_attempt_at"] is not None
    assert checkout["last_error"]["class"] == "config", checkout["last_error"]
    assert checkout["last_error"]["type"] == "credentials_refused"


def test_start_with_a_wrong_app_secret_keeps_the_checkout_and_exits_5(cli: Cli) -> None:
    request = checkout_request(payment=TOKEN)
    started = cli.run("checkout", "start", str(cli.write_request(request)), "--json", env=WRONG)
    assert started.returncode == 5, started.stderr
    errors = _error_lines(started.stderr)
    assert len(errors) == 1, started.stderr
    assert "credentials" in errors[0] and "kept" in errors[0]
    assert "not-the-app-secret" not in started.stderr + started.stdout
    _kept_for_credentials(_status(cli, request["app_order_id"]))

    fixed = cli.run("recover", "--until-idle", "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert _status(cli, request["app_order_id"])["state"] == "submitted"


def test_recover_with_a_wrong_app_secret_fails_nothing_and_exits_5(cli: Cli) -> None:
    ids = []
    for _ in range(3):
        request = checkout_request(payment=TOKEN)
        registered = cli.invoke("checkout", "start", str(cli.write_request(request)), "--no-run")
        assert registered.exit_code == 0, registered.output
        ids.append(request["app_order_id"])

    refused = cli.run("recover", "--until-idle", "--json", env=WRONG)
    assert refused.returncode == 5, refused.stderr
    errors = _error_lines(refused.stderr)
    assert len(errors) == 1 and "credentials" in errors[0], refused.stderr
    summary = json.loads(refused.stdout.strip().splitlines()[-1])
    assert summary["failed"] == 0 and summary["submitted"] == 0
    for app_order_id in ids:
        checkout = _status(cli, app_order_id)
        assert checkout["lease_owner"] is None
        if checkout["last_error"] is not None:  # not every one was claimed before the stop
            _kept_for_credentials(checkout)
        else:
            assert checkout["state"] == "new" and checkout["attempt"] == 0

    fixed = cli.run("recover", "--until-idle", "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert [_status(cli, i)["state"] for i in ids] == ["submitted"] * 3


@pytest.mark.parametrize("command", ["recover", "run"])
def test_fixed_credentials_inside_the_settle_window_are_not_reported_as_refused(
    cli: Cli, command: str
) -> None:
    request = checkout_request(payment=TOKEN)
    app_order_id = request["app_order_id"]
    registered = cli.invoke("checkout", "start", str(cli.write_request(request)), "--no-run")
    assert registered.exit_code == 0, registered.output
    fault = {"op": "create_cart", "kind": "drop_before_apply", "count": 1}
    httpx.post(f"{cli.sandbox.control_url}/faults", json=fault, timeout=10).raise_for_status()
    lost = cli.run("recover", "--once", "--json")  # create_cart's answer is lost: in flight
    assert lost.returncode == 0, lost.stderr
    assert _status(cli, app_order_id)["in_flight"] is True

    refused = cli.run("recover", "--once", "--json", env=WRONG)  # the probe is refused
    assert refused.returncode == 5, refused.stderr
    checkout = _status(cli, app_order_id)
    assert checkout["in_flight"] is True and checkout["last_error"]["class"] == "config"

    # Fixed: the probe reads Violet (no cart yet) and defers inside the settle window.
    if command == "recover":
        fixed = cli.run("recover", "--once", "--json")
    else:
        fixed = cli.run("checkout", "run", app_order_id, "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert _error_lines(fixed.stderr) == [], fixed.stderr
    checkout = _status(cli, app_order_id)
    assert checkout["in_flight"] is True and checkout["state"] == "new", checkout
    assert (checkout["last_error"] or {}).get("class") != "config", checkout["last_error"]
    audit = cli.invoke("audit", app_order_id, "--json")
    assert audit.exit_code == 0, audit.output
    assert '"settle_remaining_s"' in audit.stdout  # the probe went through and deferred
