"""`orchestrator recover --forever --metrics-port N` as its own process: Prometheus scrapes it
over HTTP while it finishes checkouts, and SIGTERM stops both."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.polling import eventually
from tests.fixtures.sandbox import HttpSandbox, violet_credentials_env
from tests.integration.test_recovery_cli import _register
from tests.metrics.test_endpoint import parse, value

ROOT = Path(__file__).resolve().parents[2]
_COMMAND = (sys.executable, "-m", "orchestrator", "recover", "--forever", "--json")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(database_url: str, http_sandbox: HttpSandbox) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "VIOLET_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(
        ORCHESTRATOR_DATABASE_URL=database_url,
        VIOLET_BASE_URL=http_sandbox.base_url,
        ORCHESTRATOR_BACKOFF_BASE="0.02",
        **violet_credentials_env(),
    )
    return env


def _recover(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*_COMMAND, "--metrics-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


async def test_recover_serves_metrics_that_follow_its_work(
    env: dict[str, str],
    database_url: str,
    http_sandbox: HttpSandbox,
    stopped: list[subprocess.Popen[str]],
) -> None:
    await asyncio.to_thread(_register, database_url, http_sandbox.base_url, 2)
    port = _free_port()
    process = _recover(env, port)
    stopped.append(process)
    url = f"http://127.0.0.1:{port}/metrics"
    found: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}

    async def submitted() -> bool:
        assert process.poll() is None, process.communicate()
        try:
            async with httpx.AsyncClient() as client:
                answer = await client.get(url)
        except httpx.TransportError:
            return False
        found["last"] = parse(answer.text)
        return value(found["last"], "orchestrator_checkouts", state="submitted") == 2

    await eventually(submitted, "recover's metrics to show both checkouts submitted")
    samples = found["last"]
    calls = "orchestrator_violet_calls_total"
    assert value(samples, calls, endpoint="/checkout/cart", method="POST", status="200") == 2
    assert (
        value(samples, calls, endpoint="/checkout/cart/{id}/submit", method="POST", status="200")
        == 2
    )
    assert value(samples, "orchestrator_checkouts_due") == 0

    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert '"submitted": 2' in out


def test_a_metrics_port_in_use_stops_recover_before_it_claims(
    env: dict[str, str], stopped: list[subprocess.Popen[str]]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])
        process = _recover(env, port)
        stopped.append(process)
        _, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert f"--metrics-port: cannot listen on 127.0.0.1:{port}" in err
