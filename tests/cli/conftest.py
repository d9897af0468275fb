"""Helpers for CLI tests: the environment a user would set, an in-process runner, a subprocess.

The CLI reads only the environment, so each test builds one from scratch (the test database, the
session's HTTP sandbox, its credentials) instead of inheriting the developer's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.sandbox import SANDBOX_CREDENTIALS, SandboxServer

ROOT = Path(__file__).resolve().parents[2]


def clean_environment(**values: str) -> dict[str, str]:
    """os.environ without any ORCHESTRATOR_*/VIOLET_* setting, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "VIOLET_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(values)
    return env


@dataclass
class Cli:
    """Runs `orchestrator ...` in-process (CliRunner) or as a real process, with one env."""

    env: dict[str, str]
    sandbox: SandboxServer
    workdir: Path

    def invoke(self, *args: str) -> Any:
        runner = CliRunner()
        overrides: dict[str, str | None] = {
            k: None for k in os.environ if k.startswith(("ORCHESTRATOR_", "VIOLET_"))
        }
        overrides.update(
            {k: v for k, v in self.env.items() if k.startswith(("ORCHESTRATOR_", "VIOLET_"))}
        )
        return runner.invoke(app, list(args), env=overrides, catch_exceptions=False)

    def run(
        self,
        *args: str,
        timeout: float = 60,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`orchestrator ARGS` as a process; `input` is its stdin, `env` replaces settings."""
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            check=False,
        )

    def write_request(self, request: dict[str, Any], name: str = "checkout.json") -> Path:
        path = self.workdir / name
        path.write_text(json.dumps(request), encoding="utf-8")
        return path

    def confirm_in_sandbox(self, violet_order_id: int) -> None:
        """The shopper confirms the payment (3-D Secure or intent) at the sandbox."""
        url = f"{self.sandbox.control_url}/carts/{violet_order_id}/confirm_payment"
        httpx.post(url, timeout=10).raise_for_status()

    def submits(self, violet_order_id: int) -> int:
        stats = httpx.get(f"{self.sandbox.control_url}/stats", timeout=10).json()
        return int(stats["submits"].get(str(violet_order_id), 0))


def sandbox_env(database_url: str, base_url: str) -> dict[str, str]:
    return clean_environment(
        ORCHESTRATOR_DATABASE_URL=database_url,
        VIOLET_BASE_URL=base_url,
        VIOLET_APP_ID=str(SANDBOX_CREDENTIALS["app_id"]),
        VIOLET_APP_SECRET=str(SANDBOX_CREDENTIALS["app_secret"]),
        VIOLET_USERNAME=str(SANDBOX_CREDENTIALS["username"]),
        VIOLET_PASSWORD=str(SANDBOX_CREDENTIALS["password"]),
        ORCHESTRATOR_BACKOFF_BASE="0.02",
        ORCHESTRATOR_BACKOFF_CAP="0.1",
        ORCHESTRATOR_SUBMIT_SETTLE_SECONDS="0.3",
    )


@pytest.fixture
def cli(database_url: str, sandbox_server: SandboxServer, tmp_path: Path) -> Iterator[Cli]:
    """The CLI against a fresh test database and the session's (reset) HTTP sandbox."""
    httpx.post(f"{sandbox_server.control_url}/reset", timeout=10).raise_for_status()
    yield Cli(sandbox_env(database_url, sandbox_server.base_url), sandbox_server, tmp_path)
