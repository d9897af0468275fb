"""`checkout pay`: a card checkout parked in `awaiting_payment` (its card died with a worker) is
given the card again from a file or stdin, never the command line, and finishes; the card is
never stored nor printed."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.cli.app import ExitCode
from tests.cli.conftest import Cli
from tests.fixtures.db import dump_rows
from tests.fixtures.orchestrator import VISA, checkout_request

CARD_NUMBER = "5555555555554444"  # a Mastercard test number the sandbox accepts
CARD = {**VISA, "card_number": CARD_NUMBER}
CRASH_BEFORE_PAYMENT = {
    "ORCHESTRATOR_TEST_MODE": "1",
    "ORCHESTRATOR_CRASH_AT": "after_intent_commit:apply_payment",
    "ORCHESTRATOR_LEASE_SECONDS": "1",
}


def _parked_card_checkout(cli: Cli) -> dict[str, Any]:
    """A card checkout whose worker died right before the card went to Violet, then parked by
    recovery in awaiting_payment."""
    request = checkout_request(payment=CARD)
    path = str(cli.write_request(request))
    crashed = cli.run("checkout", "start", path, env=CRASH_BEFORE_PAYMENT)
    assert crashed.returncode == -9, crashed.stderr
    recovered = cli.run("recover", "--until-idle", "--json")  # takes the expired lease over
    assert recovered.returncode == 0, recovered.stderr
    status = cli.invoke("status", request["app_order_id"], "--json")
    checkout: dict[str, Any] = json.loads(status.stdout)
    assert checkout["state"] == "awaiting_payment", checkout
    assert "orchestrator checkout pay" in checkout["waiting_reason"]
    return checkout


def test_a_card_given_again_on_stdin_finishes_a_parked_checkout_and_is_never_kept(
    cli: Cli, database_url: str
) -> None:
    parked = _parked_card_checkout(cli)
    paid = cli.run(
        "checkout", "pay", parked["app_order_id"], "--card", "-", "--json", input=json.dumps(CARD)
    )
    assert paid.returncode == ExitCode.OK, paid.stderr
    document = json.loads(paid.stdout)
    assert document["state"] == "submitted"
    assert cli.submits(document["violet_order_id"]) == 1
    assert CARD_NUMBER not in paid.stdout + paid.stderr
    dump = dump_rows(database_url)
    assert parked["id"] in dump  # the dump holds the checkout...
    assert CARD_NUMBER not in dump and "card_cvc" not in dump  # ...and never the card


def test_a_card_given_in_a_file_is_validated_like_a_request_card(cli: Cli) -> None:
    parked = _parked_card_checkout(cli)
    expired = cli.workdir / "expired.json"
    expired.write_text(json.dumps({**CARD, "card_exp_year": 2001}), encoding="utf-8")
    refused = cli.invoke("checkout", "pay", parked["id"], "--card", str(expired))
    assert refused.exit_code == ExitCode.BAD_INPUT
    assert "card_exp_year" in refused.stderr and CARD_NUMBER not in refused.stderr
    card = cli.workdir / "card.json"
    card.write_text(json.dumps({k: v for k, v in CARD.items() if k != "type"}), encoding="utf-8")
    paid = cli.invoke("checkout", "pay", parked["id"], "--card", str(card))
    assert paid.exit_code == ExitCode.OK, paid.output
    assert "submitted" in paid.stdout and CARD_NUMBER not in paid.output


def test_card_data_on_the_command_line_is_refused_without_echoing_it(cli: Cli) -> None:
    as_json = json.dumps(CARD)
    for args in (
        ["--card", as_json],
        ["--card", CARD_NUMBER],
        ["--card", "-", CARD_NUMBER],
        ["--card", "-", "--card-number", CARD_NUMBER],
    ):
        result = cli.invoke("checkout", "pay", "order-1", *args)
        assert result.exit_code == ExitCode.BAD_INPUT, (args, result.output)
        assert CARD_NUMBER not in result.output, args
        assert "file or stdin" in result.stderr, (args, result.stderr)


def test_paying_a_checkout_that_does_not_wait_for_a_card_is_refused(cli: Cli) -> None:
    request = checkout_request(payment=CARD)
    started = cli.invoke("checkout", "start", str(cli.write_request(request)))
    assert started.exit_code == ExitCode.OK, started.output
    card = cli.workdir / "card.json"
    card.write_text(json.dumps(CARD), encoding="utf-8")
    again = cli.invoke("checkout", "pay", request["app_order_id"], "--card", str(card))
    assert again.exit_code == ExitCode.BAD_INPUT
    assert "submitted" in again.stderr
