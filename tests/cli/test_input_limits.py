"""A request file (or stdin) larger than ORCHESTRATOR_MAX_REQUEST_BYTES is refused, exit 2, naming
the file, after reading at most one byte past the cap: `/dev/zero` must not exhaust memory."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

from orchestrator.cli.app import ExitCode
from tests.cli.conftest import Cli
from tests.fixtures.orchestrator import TOKEN, checkout_request

#: The child's address space: enough to import and run the CLI, far too little to read /dev/zero
#: to the end (an unbounded read dies of MemoryError within it).
ADDRESS_SPACE = 2 * 1024**3


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _start(cli: Cli, source: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "checkout", "start", source],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        preexec_fn=_limited,
        check=False,
    )


def test_an_endless_request_file_is_refused_naming_it_without_exhausting_memory(
    cli: Cli,
) -> None:
    result = _start(cli, "/dev/zero")
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1, result.stderr
    assert "/dev/zero" in result.stderr and "1048576 bytes" in result.stderr
    assert "ORCHESTRATOR_MAX_REQUEST_BYTES" in result.stderr


def test_an_endless_request_on_stdin_is_refused_too(cli: Cli) -> None:
    with open("/dev/zero", "rb") as zeros:
        result = _start(cli, "-", stdin=zeros.fileno())
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr[-2000:]
    assert "stdin" in result.stderr and "1048576 bytes" in result.stderr


def test_a_request_over_the_configured_cap_is_refused_and_one_at_the_cap_runs(
    cli: Cli, tmp_path: Path
) -> None:
    cap = 1024  # the smallest cap allowed
    compact = json.dumps(checkout_request(payment=TOKEN))
    document = compact + " " * (cap - len(compact.encode()))  # exactly at the cap
    cli.env["ORCHESTRATOR_MAX_REQUEST_BYTES"] = str(cap)
    padded = tmp_path / "padded.json"
    padded.write_text(document + " ", encoding="utf-8")
    refused = cli.invoke("checkout", "start", str(padded))
    assert refused.exit_code == ExitCode.BAD_INPUT
    assert str(padded) in refused.stderr and "bytes" in refused.stderr

    exact = tmp_path / "exact.json"
    exact.write_text(document, encoding="utf-8")
    started = cli.invoke("checkout", "start", str(exact), "--json")
    assert started.exit_code == ExitCode.OK, started.output
    assert json.loads(started.stdout)["state"] == "submitted"


def test_a_request_on_stdin_is_read_like_a_file(cli: Cli) -> None:
    request = checkout_request(payment=TOKEN)
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "checkout", "start", "-", "--json"],
        env=cli.env,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == ExitCode.OK, result.stderr
    assert json.loads(result.stdout)["app_order_id"] == request["app_order_id"]
