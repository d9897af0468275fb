"""Secrets from Violet (or typed by a user) reach neither the database, the logs, the terminal,
nor cost a checkout its outcome: the CLI against the HTTP sandbox, faults making Violet echo
what it should not."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from orchestrator.cli.app import ExitCode
from orchestrator.sandbox import SANDBOX_CREDENTIALS
from tests.cli.conftest import Cli
from tests.fixtures.db import dump_rows
from tests.fixtures.orchestrator import DIGITAL, TOKEN, checkout_request

APP_SECRET = str(SANDBOX_CREDENTIALS["app_secret"])
PASSWORD = str(SANDBOX_CREDENTIALS["password"])


def _arm(cli: Cli, op: str, kind: str, **spec: Any) -> None:
    response = httpx.post(
        f"{cli.sandbox.control_url}/faults", json={"op": op, "kind": kind, **spec}, timeout=10
    )
    response.raise_for_status()


def _start(cli: Cli, request: dict[str, Any], *args: str) -> Any:
    return cli.invoke("checkout", "start", str(cli.write_request(request)), "--json", *args)


# -- an outcome whose text the database would refuse -----------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "charge captured; src_client_secret_3Mtw2eZvKYlo2C1f reused",
        "merchant platform echoed X-Violet-Token: abc",
        "Your card 4242 4242 4242 4242 12 30 was charged",
    ],
    ids=["client-secret", "header-line", "card-in-a-longer-run"],
)
def test_a_submit_answer_with_secret_text_still_records_the_order(cli: Cli, message: str) -> None:
    """Violet accepts the order and its answer carries an errors[] entry echoing a secret: the
    checkout ends `submitted` with its order id (not exit 1 "unexpected IntegrityError", then
    `failed` by recovery while Violet shows COMPLETED), and the secret is stored nowhere."""
    _arm(cli, "submit", "cart_error", message=message)
    result = _start(cli, checkout_request(skus=DIGITAL, payment=TOKEN))
    assert result.exit_code == ExitCode.OK, result.output
    document = json.loads(result.stdout)
    assert document["state"] == "submitted" and document["violet_order_id"]
    assert cli.submits(document["violet_order_id"]) == 1
    dump = dump_rows(cli.env["ORCHESTRATOR_DATABASE_URL"])
    for secret in ("src_client_secret_3Mtw2eZvKYlo2C1f", "X-Violet-Token: abc", "4242 4242"):
        assert secret not in dump and secret not in result.output


# -- the configured credentials ----------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {
            "status": 400,
            "content_type": "text/html",
            "message": "<html><body><h1>400 Bad Request</h1><pre>POST /v1/checkout/cart/1/customer"
            f"\nX-Violet-App-Id: 10000\nX-Violet-App-Secret: {APP_SECRET}\n</pre></body></html>",
        },
        {
            "status": 400,
            "message": f"invalid credentials: app secret {APP_SECRET}, password {PASSWORD}",
        },
    ],
    ids=["html-page-echoing-the-headers", "json-message-echoing-the-secrets"],
)
def test_credentials_echoed_by_violet_reach_neither_the_database_nor_the_logs(
    cli: Cli, fault: dict[str, Any]
) -> None:
    _arm(cli, "customer", "error", **fault)
    request = checkout_request(skus=DIGITAL, payment=TOKEN)
    started = cli.run("--debug", "checkout", "start", str(cli.write_request(request)), "--json")
    assert started.returncode == ExitCode.CHECKOUT_FAILED, started.stderr
    assert json.loads(started.stdout)["state"] == "failed"
    audit = cli.run("audit", request["app_order_id"], "--json")
    assert audit.returncode == 0, audit.stderr
    assert "violet_call" in audit.stdout and "[REDACTED]" in audit.stdout
    everything = "\n".join(
        [
            dump_rows(cli.env["ORCHESTRATOR_DATABASE_URL"]),
            started.stdout,
            started.stderr,
            audit.stdout,
            audit.stderr,
        ]
    )
    assert "DEBUG" in started.stderr  # the logs were on, and were searched
    for secret in (APP_SECRET, PASSWORD):
        assert secret not in everything


# -- card numbers and tracebacks in the logs ------------------------------------------------------


def test_recover_never_logs_a_card_number_violet_echoed_in_a_decline(cli: Cli) -> None:
    """The decline's message carries the card with more digit groups after it: the client's
    redaction once missed it (greedy), the tripwire refused the write, and `recover` logged
    "drive failed" with a traceback quoting the message. Now the decline is recorded."""
    request = checkout_request(skus=DIGITAL, payment=TOKEN)
    registered = _start(cli, request, "--no-run")
    assert registered.exit_code == ExitCode.OK, registered.output
    _arm(cli, "submit", "error", status=402, message="Your card 4242 4242 4242 4242 12 30 ...")
    recovered = cli.run("recover", "--once")
    assert "4242 4242" not in recovered.stderr + recovered.stdout
    assert "drive failed" not in recovered.stderr
    status = json.loads(cli.invoke("status", request["app_order_id"], "--json").stdout)
    assert status["state"] == "failed"
    assert status["last_error"]["status"] == 402


# -- what the CLI repeats back ---------------------------------------------------------------------


def test_a_card_number_given_as_a_reference_is_not_repeated(cli: Cli) -> None:
    for command in ("status", "audit"):
        result = cli.invoke(command, "4242424242424242")
        assert result.exit_code == ExitCode.NOT_FOUND
        assert "4242424242424242" not in result.output


def test_a_card_number_used_as_a_json_key_is_not_repeated(cli: Cli) -> None:
    request = {**checkout_request(payment=TOKEN), "4242424242424242": "card"}
    result = cli.invoke("checkout", "start", str(cli.write_request(request)))
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "4242424242424242" not in result.output


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("last_name", "Lovelace src_client_secret_abc"),
        ("last_name", "card-4242424242424242"),
        ("first_name", "Ada\t4242.4242.4242.4242"),
    ],
    ids=["client-secret", "card-glued-to-a-word", "card-with-dots"],
)
def test_a_secret_in_the_request_exits_2_naming_the_field(cli: Cli, field: str, value: str) -> None:
    request = checkout_request(payment=TOKEN)
    request["customer"][field] = value
    result = cli.invoke("checkout", "start", str(cli.write_request(request)))
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert f"customer.{field}" in result.stderr and "unexpected" not in result.stderr
    assert value.split()[-1] not in result.output
    assert cli.invoke("status", request["app_order_id"]).exit_code == ExitCode.NOT_FOUND


# -- terminal control codes from Violet ------------------------------------------------------------


def test_violet_text_with_terminal_escapes_is_shown_escaped(cli: Cli) -> None:
    hostile = "declined\x1b]0;owned\x07\x1b[2J\x1b[31m red \x9b1m\u202eexe.txt"
    _arm(cli, "customer", "error", status=400, message=hostile)
    request = checkout_request(skus=DIGITAL, payment=TOKEN)
    started = cli.invoke("checkout", "start", str(cli.write_request(request)))
    assert started.exit_code == ExitCode.CHECKOUT_FAILED
    outputs = [started.output]
    for command in ("status", "audit"):
        result = cli.invoke(command, request["app_order_id"])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    for output in outputs:
        assert not any(ch in output for ch in ("\x1b", "\x07", "\x9b", "\u202e")), output
    assert "\\x1b]0;owned" in outputs[1]  # shown, escaped, where the error is listed
