"""The CLI on bad input, bad arguments and bad settings: exit 2 (4 for not found) naming the
file, field or setting, never "unexpected" (exit 1 is a failed checkout), never a card number or
the database password in its output, and nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from orchestrator.cli.app import ExitCode
from orchestrator.config import Settings
from tests.cli.conftest import Cli, sandbox_env
from tests.fixtures.db import libpq_url
from tests.fixtures.orchestrator import checkout_request

CARD = "4242424242424242"
NOWHERE = "http://127.0.0.1:9/v1"  # nothing in these CLI tests may reach Violet


def _rows(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute("SELECT count(*) FROM checkouts").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def bad_cli(database_url: str, tmp_path: Path) -> Cli:
    """The CLI on a fresh test database; Violet points nowhere (bad input must not reach it)."""
    return Cli(sandbox_env(database_url, NOWHERE), None, tmp_path)  # type: ignore[arg-type]


def test_settings_repr_and_config_command_hide_the_database_password(bad_cli: Cli) -> None:
    """repr(Settings) and `orchestrator config` ("secrets masked") mask the PostgreSQL
    password."""
    url = "postgresql://postgres:hunter2@127.0.0.1:5432/somewhere"
    assert "hunter2" not in repr(Settings(database_url=url))
    bad_cli.env["ORCHESTRATOR_DATABASE_URL"] = url
    result = bad_cli.invoke("config")
    assert result.exit_code == 0
    assert "hunter2" not in result.output


def _deep(path: Path) -> None:
    path.write_text('{"skus": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")


def _latin1(path: Path) -> None:
    document = json.dumps(checkout_request(app_order_id="cafe")).replace("cafe", "caf\xe9")
    path.write_bytes(document.encode("latin-1"))


def _request(**overrides: Any) -> Any:
    def write(path: Path) -> None:
        path.write_text(json.dumps(checkout_request(**overrides)), encoding="utf-8")

    return write


@pytest.mark.parametrize(
    ("writer", "field"),
    [
        (_deep, None),
        (_latin1, None),
        (_request(skus=[{"sku_id": 10**30, "quantity": 1}]), "skus.0.sku_id"),
        (
            _request(customer={"first_name": CARD, "last_name": "L", "email": "a@example.com"}),
            "customer.first_name",
        ),
    ],
    ids=["deeply-nested-json", "not-utf8", "sku-id-too-big", "card-number-in-name"],
)
def test_cli_bad_request_file_exits_2_naming_the_file_or_field(
    bad_cli: Cli, database_url: str, writer: Any, field: str | None
) -> None:
    """A request file that cannot be read as JSON (nested too deep, not UTF-8) names the file; a
    request the validation or the database refuses names the field; both exit 2."""
    path = bad_cli.workdir / "request.json"
    writer(path)
    result = bad_cli.invoke("checkout", "start", str(path))
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert (field or "request.json") in result.stderr
    assert CARD not in result.stderr
    assert "unexpected" not in result.stderr
    assert _rows(database_url) == 0


def test_cli_infinite_lease_seconds_is_a_bad_setting(bad_cli: Cli, database_url: str) -> None:
    """A lease must be finite: ORCHESTRATOR_LEASE_SECONDS=inf is refused as a bad setting, named,
    before PostgreSQL sees an interval out of range."""
    bad_cli.env["ORCHESTRATOR_LEASE_SECONDS"] = "inf"
    path = bad_cli.write_request(checkout_request())
    result = bad_cli.invoke("checkout", "start", str(path))
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert "ORCHESTRATOR_LEASE_SECONDS" in result.stderr
    assert _rows(database_url) == 0


def test_cli_malformed_database_url_exits_2_naming_the_setting(bad_cli: Cli) -> None:
    """A database URL with a non-numeric port is a bad setting, named, its password masked."""
    bad_cli.env["ORCHESTRATOR_DATABASE_URL"] = "postgresql://postgres:hunter2@127.0.0.1:abc/db"
    result = bad_cli.invoke("status", "order-1")
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert "ORCHESTRATOR_DATABASE_URL" in result.stderr
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("status", "²"), ExitCode.NOT_FOUND),
        (("audit", "²"), ExitCode.NOT_FOUND),
        (("list", "--since", "99999999d"), ExitCode.BAD_INPUT),
        (("sandbox", "serve", "--port", "99999"), ExitCode.BAD_INPUT),
    ],
    ids=["status-unicode-digit", "audit-unicode-digit", "since-overflow", "port-out-of-range"],
)
def test_cli_bad_arguments_get_their_documented_exit_code(
    bad_cli: Cli, args: tuple[str, ...], code: ExitCode
) -> None:
    """A reference no checkout can have is not found; an argument out of range (a duration, a
    port) is bad input; neither is "unexpected" with exit 1, which the docs reserve for a failed
    checkout."""
    result = bad_cli.invoke(*args)
    assert result.exit_code == code, result.stderr
    assert "unexpected" not in result.stderr
