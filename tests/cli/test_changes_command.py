"""`orchestrator changes`: the feed from the shell, one line per change, resumable by cursor,
followed as changes come; bad input and an unreachable database exit as every command does."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from typing import Any

from orchestrator.cli.app import ExitCode
from tests.cli.conftest import Cli, clean_environment
from tests.cli.test_startup_imports import _NEVER_AT_START, _imported, _loaded
from tests.fixtures.orchestrator import DECLINED, TOKEN, checkout_request


def _start(cli: Cli, payment: dict[str, Any]) -> dict[str, Any]:
    result = cli.invoke(
        "checkout", "start", str(cli.write_request(checkout_request(payment=payment))), "--json"
    )
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _changes(cli: Cli, *args: str, count: int) -> list[dict[str, Any]]:
    """`changes --json ARGS` once it prints `count` lines (at most 30 s): a committed change
    shows once every older transaction on the server has ended."""
    deadline = time.monotonic() + 30
    while True:
        result = cli.invoke("changes", "--json", *args)
        assert result.exit_code == ExitCode.OK, result.output
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_changes_print_one_json_line_each_and_resume_from_a_cursor(cli: Cli) -> None:
    submitted = _start(cli, TOKEN)
    failed = _start(cli, DECLINED)
    assert (submitted["state"], failed["state"]) == ("submitted", "failed")

    first, second = _changes(cli, count=2)
    assert [first["checkout_id"], second["checkout_id"]] == [submitted["id"], failed["id"]]
    assert {first["kind"], second["kind"]} == {"checkout_finished"}
    assert first["app_order_id"] == submitted["app_order_id"]
    assert first["detail"]["totals"]["total"] == submitted["totals"]["total"]
    assert second["detail"]["error_type"] == "card_declined"
    assert first["cursor"].endswith(f":{first['id']}") and first["at"].endswith("Z")

    assert _changes(cli, "--after", first["cursor"], count=1) == [second]
    assert _changes(cli, "--after", second["cursor"], count=0) == []
    assert _changes(cli, "--limit", "1", count=1) == [first]

    text = cli.invoke("changes", "--after", first["cursor"])
    assert text.exit_code == ExitCode.OK
    (line,) = text.stdout.splitlines()
    assert line.startswith(f"{second['cursor']}  ") and "checkout_finished" in line
    assert failed["app_order_id"] in line
    empty = cli.invoke("changes", "--after", second["cursor"])
    assert (empty.stdout, empty.stderr) == ("", f"no changes after {second['cursor']}\n")


def test_a_bad_cursor_or_limit_exits_2_naming_it(cli: Cli) -> None:
    for args, named in (
        (["--after", "yesterday"], "'yesterday'"),
        (["--after", "1:2:3"], "'1:2:3'"),
        (["--limit", "0"], "--limit"),
        (["--limit", "1001"], "--limit"),
    ):
        result = cli.invoke("changes", *args)
        assert result.exit_code == ExitCode.BAD_INPUT, args
        assert result.stderr.count("\n") == 1 and named in result.stderr, result.stderr


def test_an_unreachable_database_exits_5_with_one_line(cli: Cli) -> None:
    cli.env["ORCHESTRATOR_DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/nowhere"
    for args in ([], ["--follow"]):
        result = cli.invoke("changes", *args)
        assert result.exit_code == ExitCode.UNAVAILABLE
        assert result.stderr.count("\n") == 1 and "127.0.0.1:1" in result.stderr


def test_follow_prints_each_change_as_it_comes(cli: Cli) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "changes", "--follow", "--json"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    stdout = follower.stdout
    assert stdout is not None

    def read_lines() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=read_lines, daemon=True).start()
    try:
        first = _start(cli, TOKEN)
        assert json.loads(lines.get(timeout=30))["checkout_id"] == first["id"]
        second = _start(cli, DECLINED)
        came = json.loads(lines.get(timeout=30))
        assert (came["checkout_id"], came["detail"]["state"]) == (second["id"], "failed")
        assert follower.poll() is None  # still following
    finally:
        follower.kill()
        follower.wait(10)


def test_changes_imports_neither_alembic_nor_the_http_client(database_url: str) -> None:
    modules = _imported("changes", env=clean_environment(ORCHESTRATOR_DATABASE_URL=database_url))
    assert "orchestrator.store.changes" in modules  # the query did run
    assert _loaded(modules, _NEVER_AT_START) == []
