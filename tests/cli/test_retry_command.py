"""`orchestrator retry` against the test database and the HTTP sandbox: a checkout whose submit
Violet took is retried to `submitted` with one submit; Violet's final word is refused with exit 2
and nothing changes; a filter lists (dry run) and reopens exactly the retryable ones."""

from __future__ import annotations

import asyncio
import getpass
import json
from typing import Any

import httpx
import pytest

from orchestrator.api import Orchestrator
from orchestrator.cli.app import ExitCode
from orchestrator.recovery import RecoveryJob
from tests.cli.conftest import Cli
from tests.fixtures.db import run_sql
from tests.fixtures.orchestrator import DECLINED, DIGITAL, TOKEN, checkout_request, make_settings


def _stats(cli: Cli) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{cli.sandbox.control_url}/stats", timeout=10).json()
    return stats


def _database_url(cli: Cli) -> str:
    return cli.env["ORCHESTRATOR_DATABASE_URL"]


async def _submit_taken_then_poisoned(cli: Cli) -> str:
    """A checkout whose submit Violet took (the answer dropped), failed on our side: its workers
    kept dying on it (poison). Returns its app_order_id."""
    url = _database_url(cli)
    spec = {"op": "submit", "kind": "drop_after_apply", "count": 1}
    async with httpx.AsyncClient(timeout=10) as client:
        (await client.post(f"{cli.sandbox.control_url}/faults", json=spec)).raise_for_status()
    async with Orchestrator(make_settings(url, cli.sandbox.base_url)) as orch:
        first = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        assert (first.state, first.in_flight) == ("priced", True)
        await run_sql(
            url,
            "UPDATE checkouts SET lease_owner = 'dead', lease_expires_at = now() - interval '1 s', "
            "next_attempt_at = now() - interval '1 s', recoveries = %(r)s WHERE id = %(id)s",
            {"r": orch.settings.max_recoveries + 1, "id": first.id},
        )
        await RecoveryJob(orch.worker).run("until-idle")
        failed = await orch.get(first.id)
    assert failed.state == "failed" and (failed.last_error or {}).get("type") == "poison"
    return failed.app_order_id


def _status(cli: Cli, ref: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    audit = cli.invoke("audit", ref, "--json")
    assert audit.exit_code == ExitCode.OK, audit.output
    document = json.loads(audit.stdout)
    return document["checkout"], document["events"]


def test_retry_records_the_order_violet_took_without_a_second_submit(cli: Cli) -> None:
    ref = asyncio.run(_submit_taken_then_poisoned(cli))

    result = cli.invoke(
        "retry", ref, "--reason", "crash loop fixed", "--actor", "ops:ada", "--json"
    )

    assert result.exit_code == ExitCode.OK, result.output
    assert json.loads(result.stdout)["state"] == "submitted"
    assert _stats(cli)["calls_by_op"]["submit"] == 1
    _, events = _status(cli, ref)
    retried = next(e for e in events if e["kind"] == "retried")
    assert retried["detail"]["actor"] == "ops:ada"
    assert retried["detail"]["reason"] == "crash loop fixed"
    later = [e["kind"] for e in events if e["seq"] > retried["seq"] and e["kind"] != "violet_call"]
    assert later == ["transition", "reconciled", "transition"]
    shown = cli.invoke("audit", ref)
    assert "retried" in shown.stdout and "failed -> priced" in shown.stdout


def test_a_declined_card_is_refused_with_exit_2_and_nothing_changes(cli: Cli) -> None:
    started = cli.invoke(
        "checkout", "start", str(cli.write_request(checkout_request(payment=DECLINED))), "--json"
    )
    assert started.exit_code == ExitCode.CHECKOUT_FAILED, started.output
    ref = json.loads(started.stdout)["id"]
    before = _status(cli, ref)

    result = cli.run("retry", ref, "--reason", "try again")

    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert "card was declined" in result.stderr and "Violet's final word" in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback
    assert _status(cli, ref) == before


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), "give a checkout, or a filter"),
        (("some-ref", "--all-failed"), "not both"),
        (("some-ref", "--dry-run"), "go with a filter"),
        (("--error-type", "poison", "--no-run"), "goes with REF"),
        (("--all-failed", "--limit", "0"), "limit"),
        (("--all-failed", "--since", "yesterday-ish"), "--since"),
    ],
)
def test_exactly_one_of_a_checkout_or_a_filter(cli: Cli, args: tuple[str, ...], words: str) -> None:
    result = cli.invoke("retry", *args)
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert words in result.stderr


def test_filtered_retry_lists_with_a_dry_run_then_reopens_for_recovery(cli: Cli) -> None:
    lost = asyncio.run(_submit_taken_then_poisoned(cli))
    declined = cli.invoke(
        "checkout", "start", str(cli.write_request(checkout_request(payment=DECLINED))), "--json"
    )
    declined_id = json.loads(declined.stdout)["id"]
    before = _status(cli, lost)

    dry = cli.invoke("retry", "--all-failed", "--dry-run", "--json")

    assert dry.exit_code == ExitCode.OK, dry.output
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True
    assert [c["app_order_id"] for c in report["retried"]] == [lost]
    assert [c["id"] for c in report["refused"]] == [declined_id]
    assert "Violet's final word" in report["refused"][0]["refused"]
    assert _status(cli, lost) == before
    text = cli.invoke("retry", "--since", "1h", "--dry-run")
    assert "would retry: 1" in text.stdout and "dry run: nothing was changed" in text.stdout

    done = cli.invoke("retry", "--error-type", "poison", "--json")

    assert done.exit_code == ExitCode.OK, done.output
    assert [c["app_order_id"] for c in json.loads(done.stdout)["retried"]] == [lost]
    checkout, events = _status(cli, lost)
    assert (checkout["state"], checkout["pending_step"], checkout["in_flight"]) == (
        "priced",
        "submit",
        True,
    )
    actor = next(e for e in events if e["kind"] == "retried")["detail"]["actor"]
    assert actor == f"cli:{getpass.getuser()}"
    recovered = cli.invoke("recover", "--until-idle", "--json")
    assert recovered.exit_code == ExitCode.OK, recovered.output
    checkout = _status(cli, lost)[0]
    assert checkout["state"] == "submitted"
    stats = _stats(cli)  # the declined card was refused at its own submit
    assert stats["submits"][str(checkout["violet_order_id"])] == 1
    assert stats["duplicate_submits"] == {}


def test_no_run_reopens_and_leaves_it_to_recovery(cli: Cli) -> None:
    ref = asyncio.run(_submit_taken_then_poisoned(cli))
    result = cli.invoke("retry", ref, "--no-run", "--json")
    assert result.exit_code == ExitCode.OK, result.output
    checkout = json.loads(result.stdout)
    assert (checkout["state"], checkout["in_flight"], checkout["lease_owner"]) == (
        "priced",
        True,
        None,
    )
    assert _stats(cli)["calls_by_op"]["submit"] == 1
