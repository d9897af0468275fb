"""The CLI in-process (typer's CliRunner) against the test database and the HTTP sandbox:
`--json` documents, exit codes, one-line errors, plain output when not on a terminal."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.cli.app import ExitCode
from orchestrator.cli.plumbing import parse_time
from orchestrator.engine import machine
from orchestrator.errors import InvalidRequest
from orchestrator.store.database import create_engine
from orchestrator.store.repository import Repository
from tests.cli.conftest import Cli
from tests.fixtures.orchestrator import (
    DECLINED,
    INTENT,
    ONE_REJECTED,
    THREE_DS,
    TOKEN,
    checkout_request,
)

ANSI = re.compile(r"\x1b\[")


def _json(output: str) -> dict[str, object]:
    document = json.loads(output)
    assert isinstance(document, dict)
    return document


def test_start_json_then_status_audit_list_and_stats_agree(cli: Cli) -> None:
    request = checkout_request(payment=TOKEN)
    started = cli.invoke("checkout", "start", str(cli.write_request(request)), "--json")
    assert started.exit_code == ExitCode.OK, started.output
    checkout = _json(started.stdout)
    assert checkout["state"] == "submitted"
    assert checkout["app_order_id"] == request["app_order_id"]
    assert isinstance(checkout["violet_order_id"], int)
    uuid.UUID(str(checkout["id"]))
    assert cli.submits(checkout["violet_order_id"]) == 1

    for ref in (str(checkout["id"]), request["app_order_id"], str(checkout["violet_order_id"])):
        status = cli.invoke("status", ref, "--json")
        assert status.exit_code == 0
        assert _json(status.stdout)["id"] == checkout["id"]
    document = _json(cli.invoke("status", request["app_order_id"], "--json").stdout)
    assert document["bags"][0]["status"] == "ACCEPTED"  # type: ignore[index]
    assert str(document["created_at"]).endswith("Z")

    audit = _json(cli.invoke("audit", request["app_order_id"], "--json").stdout)
    events = audit["events"]
    assert isinstance(events, list)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    submit_call = next(e for e in events if e["kind"] == "violet_call" and e["step"] == "submit")
    assert submit_call["http_method"] == "POST"
    assert submit_call["http_path"].endswith("/submit")
    assert submit_call["http_status"] == 200
    assert submit_call["latency_ms"] is not None
    assert events[-1]["to_state"] == "submitted"
    assert {"at", "from_state", "error_class", "error_type", "error_message"} <= set(events[0])

    listed = _json(cli.invoke("list", "--json").stdout)
    assert listed["count"] == 1
    stats = _json(cli.invoke("stats", "--json").stdout)
    assert stats["total"] == 1
    assert stats["by_state"]["submitted"] == 1  # type: ignore[index]
    # The merchant's rate budget: its calls counted (every platform call after the cart's
    # creation took its turn), no 429, open.
    budgets = {b["key"]: b for b in stats["budgets"]}  # type: ignore[union-attr,index]
    assert budgets["merchant:10068"]["calls"] >= 3
    assert (budgets["merchant:10068"]["rate_limited"], budgets["merchant:10068"]["open"]) == (
        0,
        True,
    )
    assert "merchant:10068" in cli.invoke("stats").stdout


def test_declined_card_exits_1_with_the_failed_checkout(cli: Cli) -> None:
    result = cli.invoke(
        "checkout", "start", str(cli.write_request(checkout_request(payment=DECLINED))), "--json"
    )
    assert result.exit_code == ExitCode.CHECKOUT_FAILED
    document = _json(result.stdout)
    assert document["state"] == "failed"
    assert document["last_error"]["type"] == "card_declined"  # type: ignore[index]
    assert "4000000000000002" not in result.output
    failed = _json(cli.invoke("list", "--failed", "--json").stdout)
    assert failed["count"] == 1
    by_type = _json(cli.invoke("list", "--error-type", "card_declined", "--json").stdout)
    assert by_type["count"] == 1
    assert _json(cli.invoke("list", "--state", "submitted", "--json").stdout)["count"] == 0


def test_bad_json_file_exits_2_naming_the_file(cli: Cli) -> None:
    path = cli.workdir / "broken.json"
    path.write_text('{"skus": [', encoding="utf-8")
    result = cli.invoke("checkout", "start", str(path))
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "broken.json" in result.stderr and "not valid JSON" in result.stderr
    assert result.stdout == ""
    missing = cli.invoke("checkout", "start", str(cli.workdir / "absent.json"))
    assert missing.exit_code == ExitCode.BAD_INPUT
    assert "absent.json" in missing.stderr


def test_invalid_request_exits_2_naming_each_field_never_the_card(cli: Cli) -> None:
    request = checkout_request(currency="usd")
    request["customer"]["email"] = "not-an-email"
    request["payment"] = {**request["payment"], "card_number": "4242424242424241"}
    result = cli.invoke("checkout", "start", str(cli.write_request(request)))
    assert result.exit_code == ExitCode.BAD_INPUT
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for field in ("currency", "customer.email", "payment.card_number"):
        assert field in lines[0]
    assert "4242424242424241" not in result.output
    assert "Traceback" not in result.output


def test_unknown_checkout_exits_4(cli: Cli) -> None:
    for command in (["status"], ["audit"], ["checkout", "cancel"]):
        result = cli.invoke(*command, "no-such-order")
        assert result.exit_code == ExitCode.NOT_FOUND, command
        assert "no-such-order" in result.stderr


def test_a_checkout_leased_by_another_worker_exits_3(cli: Cli) -> None:
    request = checkout_request(payment=TOKEN)
    started = cli.invoke("checkout", "start", str(cli.write_request(request)), "--no-run", "--json")
    assert started.exit_code == 0
    assert _json(started.stdout)["state"] == "new"

    async def hold() -> None:
        engine = create_engine(cli.env["ORCHESTRATOR_DATABASE_URL"], pool_size=1)
        try:
            row = await Repository(engine).get(request["app_order_id"])
            assert row is not None
            await Repository(engine).claim(row.id, worker="elsewhere", lease_seconds=300)
        finally:
            await engine.dispose()

    asyncio.run(hold())
    result = cli.invoke("checkout", "run", request["app_order_id"])
    assert result.exit_code == ExitCode.BUSY
    assert "elsewhere" in result.stderr


def test_illegal_moves_exit_2(cli: Cli) -> None:
    request = checkout_request(payment=TOKEN)
    assert cli.invoke("checkout", "start", str(cli.write_request(request))).exit_code == 0
    for command in ("cancel", "confirm-payment"):
        result = cli.invoke("checkout", command, request["app_order_id"])
        assert result.exit_code == ExitCode.BAD_INPUT, command
        assert "submitted" in result.stderr


def test_three_d_secure_waits_then_confirm_payment_submits_once(cli: Cli) -> None:
    request = checkout_request(payment=THREE_DS)
    started = cli.invoke("checkout", "start", str(cli.write_request(request)), "--json")
    assert started.exit_code == 0
    waiting = _json(started.stdout)
    assert waiting["state"] == "requires_action"
    violet_order_id = waiting["violet_order_id"]
    assert isinstance(violet_order_id, int)
    cli.confirm_in_sandbox(violet_order_id)
    done = cli.invoke("checkout", "confirm-payment", request["app_order_id"], "--json")
    assert done.exit_code == 0, done.output
    assert _json(done.stdout)["state"] == "submitted"
    assert cli.submits(violet_order_id) == 1


def test_intent_client_secret_is_shown_only_when_asked(cli: Cli) -> None:
    hidden = cli.invoke(
        "checkout", "start", str(cli.write_request(checkout_request(payment=INTENT))), "--json"
    )
    assert hidden.exit_code == 0
    assert _json(hidden.stdout)["state"] == "awaiting_confirmation"
    assert "secret" not in hidden.stdout
    assert "--show-secret" in hidden.stderr

    shown = cli.invoke(
        "checkout",
        "start",
        str(cli.write_request(checkout_request(payment=INTENT))),
        "--json",
        "--show-secret",
    )
    handout = _json(shown.stdout)["handout"]
    assert str(handout["payment_intent_client_secret"]).startswith("pi_")  # type: ignore[index]


def test_cancel_a_waiting_checkout(cli: Cli) -> None:
    request = checkout_request(payment=INTENT)
    cli.invoke("checkout", "start", str(cli.write_request(request)))
    result = cli.invoke("checkout", "cancel", request["app_order_id"], "--json")
    assert result.exit_code == 0
    canceled = _json(result.stdout)
    assert canceled["state"] == "canceled"
    assert canceled["violet_status"] == "DELETED"  # the cart was released, as Violet now says


def test_human_output_is_plain_text_when_not_a_terminal(cli: Cli) -> None:
    request = checkout_request(payment=TOKEN)
    start = cli.invoke("checkout", "start", str(cli.write_request(request)))
    assert start.exit_code == 0
    assert "state:" in start.stdout and "submitted" in start.stdout
    outputs = [
        start.stdout,
        cli.invoke("status", request["app_order_id"]).stdout,
        cli.invoke("audit", request["app_order_id"]).stdout,
        cli.invoke("list").stdout,
        cli.invoke("stats").stdout,
    ]
    for output in outputs:
        assert output.strip()
        assert not ANSI.search(output)
        assert "│" not in output and "━" not in output  # no box drawing either
    audit_lines = outputs[2].splitlines()
    assert audit_lines[1].split()[:2] == ["time", "event"]
    assert any("POST /checkout/cart/" in line and "-> 200" in line for line in audit_lines)


def test_unreachable_database_exits_5_with_one_line(cli: Cli) -> None:
    cli.env["ORCHESTRATOR_DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/nowhere"
    for command in (["status", "x"], ["list"], ["stats"]):
        result = cli.invoke(*command)
        assert result.exit_code == ExitCode.UNAVAILABLE, command
        assert result.stderr.count("\n") == 1 and "127.0.0.1:1" in result.stderr
        assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(cli: Cli) -> None:
    cli.env["ORCHESTRATOR_DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/nowhere"
    result = cli.invoke("--debug", "stats")
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert "Traceback" in result.stderr


def test_bad_settings_exit_2_naming_the_variable(cli: Cli) -> None:
    cli.env["VIOLET_BASE_URL"] = "ftp://nowhere"
    result = cli.invoke("checkout", "start", str(cli.write_request(checkout_request())))
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "VIOLET_BASE_URL" in result.stderr


def test_unreachable_violet_keeps_the_checkout_and_exits_5(cli: Cli) -> None:
    cli.env["VIOLET_BASE_URL"] = "http://127.0.0.1:1/v1"
    request = checkout_request(payment=TOKEN)
    result = cli.invoke("checkout", "start", str(cli.write_request(request)), "--json")
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert "will be retried" in result.stderr
    document = _json(result.stdout)
    assert document["state"] == "new" and document["pending_step"] == "create_cart"


def test_db_current_reports_head(cli: Cli) -> None:
    result = cli.invoke("db", "current", "--json")
    assert result.exit_code == 0
    document = _json(result.stdout)
    assert document["up_to_date"] is True and document["current"] == document["head"]
    upgrade = cli.invoke("db", "upgrade")
    assert upgrade.exit_code == 0 and str(document["head"]) in upgrade.stdout


def test_diagram_is_the_machines_own_mermaid(cli: Cli) -> None:
    result = cli.invoke("diagram")
    assert result.exit_code == 0
    assert result.stdout.strip() == machine.mermaid().strip()
    assert cli.invoke("diagram", "--format", "png").exit_code == ExitCode.BAD_INPUT


def test_bad_list_filters_exit_2(cli: Cli) -> None:
    assert cli.invoke("list", "--state", "bogus").exit_code == ExitCode.BAD_INPUT
    assert cli.invoke("list", "--since", "yesterday-ish").exit_code == ExitCode.BAD_INPUT
    assert cli.invoke("list", "--limit", "0").exit_code == ExitCode.BAD_INPUT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ],
)
def test_parse_time_absolute(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


def test_parse_time_relative_and_invalid() -> None:
    before = datetime.now(UTC)
    parsed = parse_time("2h")
    after = datetime.now(UTC)
    assert before - timedelta(hours=2) <= parsed <= after - timedelta(hours=2)
    assert parse_time("90m") < parse_time("1h")
    with pytest.raises(InvalidRequest):
        parse_time("last tuesday")


def test_the_text_audit_marks_a_partial_acceptance(cli: Cli) -> None:
    request = checkout_request(skus=ONE_REJECTED, payment=TOKEN)
    started = cli.invoke("checkout", "start", str(cli.write_request(request)))
    assert started.exit_code == ExitCode.OK, started.output
    audit = cli.invoke("audit", request["app_order_id"])
    submitted = next(line for line in audit.stdout.splitlines() if "priced -> submitted" in line)
    assert "partial: accepted bags [" in submitted, submitted


def test_an_unknown_migration_revision_exits_2(cli: Cli) -> None:
    result = cli.invoke("db", "upgrade", "--revision", "bogus")
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert result.stderr.startswith("error: migrations: ")


def test_svg_without_pygraphviz_exits_2_instead_of_writing_mermaid(cli: Cli) -> None:
    if importlib.util.find_spec("pygraphviz") is not None:
        pytest.skip("pygraphviz is installed here")
    result = cli.invoke("diagram", "--format", "svg")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stdout == ""
    assert "pygraphviz" in result.stderr


def test_a_reader_that_leaves_early_is_not_an_error(cli: Cli) -> None:
    for n in range(3):
        path = cli.write_request(checkout_request(payment=TOKEN), f"c{n}.json")
        assert cli.invoke("checkout", "start", str(path)).exit_code == ExitCode.OK
    listing = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "list"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert listing.stdout is not None and listing.stderr is not None
    listing.stdout.close()  # like `| head -0`: nobody reads what list prints
    assert listing.wait(timeout=60) == 0
    assert b"BrokenPipe" not in listing.stderr.read()


def test_usage_errors_and_help_are_plain_text(cli: Cli) -> None:
    """docs/cli.md: no box drawing; typer draws boxes with rich unless told not to."""
    for args in (("recover", "--concurrency", "0"), ("frobnicate",), ("--help",)):
        result = cli.run(*args)
        text = result.stdout + result.stderr
        assert not set("╭╮╰╯│─") & set(text), text
    assert cli.run("recover", "--concurrency", "0").returncode == 2
