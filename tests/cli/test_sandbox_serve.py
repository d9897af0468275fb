"""`sandbox serve` on an address other hosts can reach: the unauthenticated /_sandbox control
surface (reset, faults, confirm payments) is left out unless `--allow-remote-control`, and stderr
says which it is."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from orchestrator.sandbox import SANDBOX_CREDENTIALS
from tests.cli.conftest import clean_environment

_ANNOUNCED = re.compile(r"sandbox listening on http://\S+:(\d+)/v1")


@dataclass
class Served:
    port: int
    process: subprocess.Popen[str]

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def login(self) -> httpx.Response:
        return httpx.post(
            f"http://127.0.0.1:{self.port}/v1/login",
            headers={
                "X-Violet-App-Id": str(SANDBOX_CREDENTIALS["app_id"]),
                "X-Violet-App-Secret": str(SANDBOX_CREDENTIALS["app_secret"]),
            },
            json={
                "username": SANDBOX_CREDENTIALS["username"],
                "password": SANDBOX_CREDENTIALS["password"],
            },
            timeout=10,
        )

    def stderr(self) -> str:
        """What it wrote on stderr (read after it stopped)."""
        assert self.process.stderr is not None
        return self.process.stderr.read()


@contextmanager
def _serve(*args: str) -> Iterator[Served]:
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "sandbox", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=clean_environment(),
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        announced = _ANNOUNCED.search(line)
        if announced is None:
            process.kill()
            pytest.fail(f"the sandbox did not start: {line!r} {process.communicate()[1]}")
        served = Served(int(announced.group(1)), process)
        yield served
    finally:
        process.terminate()
        process.wait(30)


def test_a_sandbox_on_all_interfaces_serves_violet_without_its_control_surface() -> None:
    with _serve("--host", "0.0.0.0") as served:
        assert served.login().status_code == 200
        assert served.get("/_sandbox/stats").status_code == 404
    stderr = served.stderr()
    assert "0.0.0.0" in stderr and "/_sandbox" in stderr and "--allow-remote-control" in stderr


def test_allow_remote_control_serves_the_control_surface_with_a_warning() -> None:
    with _serve("--host", "0.0.0.0", "--allow-remote-control") as served:
        assert served.get("/_sandbox/stats").status_code == 200
    stderr = served.stderr()
    assert "warning" in stderr and "anyone who can reach" in stderr


def test_a_loopback_sandbox_keeps_its_control_surface_without_a_warning() -> None:
    with _serve("--host", "127.0.0.1") as served:
        assert served.get("/_sandbox/stats").status_code == 200
    assert "warning" not in served.stderr()
