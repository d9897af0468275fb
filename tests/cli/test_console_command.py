"""`orchestrator console`: refuses a non-local address without logins, serves with them."""

from __future__ import annotations

import base64

import httpx
from typer.testing import CliRunner

from orchestrator.cli.app import app
from tests.fixtures.console import console_env, served_console


def test_a_non_local_address_without_logins_is_refused() -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10", "console.example"):
        result = CliRunner().invoke(
            app,
            ["console", "--host", host, "--port", "0"],
            env={"ORCHESTRATOR_CONSOLE_USERS": "", "ORCHESTRATOR_CONSOLE_TOKENS": ""},
        )
        assert result.exit_code == 2, (host, result.output)
        assert f"refusing to listen on {host} without authentication" in result.output
        assert "ORCHESTRATOR_CONSOLE_USERS" in result.output


def test_with_logins_it_serves_any_address_and_asks_who_is_there(database_url: str) -> None:
    env = console_env(database_url, None, ORCHESTRATOR_CONSOLE_USERS="alice:viewer:alice-password")
    with served_console(env, host="0.0.0.0") as console:
        url = console.url.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(url, timeout=10).status_code == 401
        token = base64.b64encode(b"alice:alice-password").decode()
        page = httpx.get(url, headers={"Authorization": f"Basic {token}"}, timeout=10)
        assert page.status_code == 200 and "alice · viewer" in page.text


def test_without_violet_credentials_it_reads_and_refuses_actions(database_url: str) -> None:
    with served_console(console_env(database_url, None)) as console:
        page = httpx.get(console.url + "checkouts", timeout=10)
        assert page.status_code == 200 and "@localhost · operator" in page.text
