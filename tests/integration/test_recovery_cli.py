"""`recover` and `verify` as commands: flags, JSON output, exit codes, one-line errors."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from orchestrator.api import Orchestrator
from orchestrator.cli.plumbing import parse_time
from orchestrator.cli.recovery import recover_command, verify_command
from tests.fixtures.orchestrator import DIGITAL, TOKEN, checkout_request, make_settings
from tests.fixtures.sandbox import HttpSandbox, violet_credentials_env

app = typer.Typer()
app.command("recover")(recover_command)
app.command("verify")(verify_command)


@pytest.fixture
def cli_env(
    database_url: str, http_sandbox: HttpSandbox, monkeypatch: pytest.MonkeyPatch
) -> HttpSandbox:
    for name, value in {
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "VIOLET_BASE_URL": http_sandbox.base_url,
        **violet_credentials_env(),
        "ORCHESTRATOR_BACKOFF_BASE": "0.02",
    }.items():
        monkeypatch.setenv(name, value)
    return http_sandbox


def _register(database_url: str, base_url: str, n: int) -> list[str]:
    async def main() -> list[str]:
        async with Orchestrator(make_settings(database_url, base_url)) as orch:
            return [
                (
                    await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN), run=False)
                ).app_order_id
                for _ in range(n)
            ]

    return asyncio.run(main())


def _tamper(database_url: str, base_url: str, app_order_id: str) -> None:
    async def main() -> None:
        settings = make_settings(database_url, base_url)
        async with Orchestrator(settings) as orch, orch.engine.begin() as conn:
            # A finished checkout is frozen by a trigger: only a superuser with triggers off can.
            await conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            await conn.exec_driver_sql(
                "UPDATE checkouts SET total = total + 1 WHERE app_order_id = %(a)s",
                {"a": app_order_id},
            )

    asyncio.run(main())


def test_recover_prints_a_json_summary_and_verify_finds_no_drift(
    cli_env: HttpSandbox, database_url: str
) -> None:
    ids = _register(database_url, cli_env.base_url, 3)
    result = CliRunner().invoke(app, ["recover", "--until-idle", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) == {"claimed", "advanced", "submitted", "failed", "reconciled", "still_due"}
    assert summary["claimed"] == 3 and summary["submitted"] == 3 and summary["still_due"] == 0

    result = CliRunner().invoke(app, ["verify", "--json", "--duplicates"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["checked"] == 3 and report["drift"] == 0 and report["duplicate_orders"] == {}

    _tamper(database_url, cli_env.base_url, ids[0])
    result = CliRunner().invoke(app, ["verify"])
    assert result.exit_code == 1
    assert f"{ids[0]}" in result.stdout and "total" in result.stdout


def test_recover_once_without_json_prints_key_values(cli_env: HttpSandbox) -> None:
    result = CliRunner().invoke(app, ["recover", "--once"])
    assert result.exit_code == 0, result.output
    assert "claimed=0" in result.stdout


def test_conflicting_modes_and_bad_since_are_bad_input(cli_env: HttpSandbox) -> None:
    result = CliRunner().invoke(app, ["recover", "--once", "--forever"])
    assert result.exit_code == 2 and "choose one of" in result.stderr
    result = CliRunner().invoke(app, ["verify", "--since", "last tuesday"])
    assert result.exit_code == 2 and "--since" in result.stderr


def test_unreachable_database_exits_5_with_one_line(
    cli_env: HttpSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{port}/x")
    result = CliRunner().invoke(app, ["recover", "--once", "--db-wait", "0.6"])
    assert result.exit_code == 5
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot connect to the database" in errors[0]
    assert "Traceback" not in result.stderr


def test_parse_time_accepts_ages_and_iso_times() -> None:
    assert parse_time("2026-01-02T03:04:05Z").isoformat() == "2026-01-02T03:04:05+00:00"
    assert parse_time("2026-01-02").tzinfo is not None
    assert parse_time("90m") < parse_time("1h")
    with pytest.raises(ValueError, match="--since"):
        parse_time("soon")


def test_the_module_runs_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.recovery", "recover", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--until-idle" in result.stdout
