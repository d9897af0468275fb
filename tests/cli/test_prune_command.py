"""`orchestrator prune` as an operator runs it: a dry run's report, the JSON document, and a
prune killed with SIGKILL between two batches, then run again to the end."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from typing import Any

import psycopg

from orchestrator.cli.prune import MAX_BATCH
from orchestrator.retention import MAX_BATCH as LIBRARY_MAX_BATCH
from tests.cli.conftest import clean_environment
from tests.fixtures.db import libpq_url
from tests.fixtures.retention import age, events, make_trail


def _orchestrator(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=clean_environment(ORCHESTRATOR_DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _old_trail(database_url: str, count: int = 4) -> None:
    made = asyncio.run(make_trail(database_url, count))
    age(database_url, 100, [c.id for c in made.checkouts])


def _left(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM checkout_events "
            "WHERE orchestrator_event_prunable(request_body, response_body, detail)"
        ).fetchone()
    return int(row[0]) if row else -1


def test_a_dry_run_says_what_would_go_and_changes_nothing(database_url: str) -> None:
    _old_trail(database_url)
    before = events(database_url)
    text = _orchestrator(database_url, "prune", "--dry-run")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("would prune what is older than 90 days (before ")
    assert "events (bodies, large detail values): " in text.stdout
    assert "settled webhook events (bodies): " in text.stdout
    assert "dry run: nothing changed" in text.stdout
    document: dict[str, Any] = json.loads(
        _orchestrator(database_url, "prune", "--dry-run", "--json").stdout
    )
    assert document["dry_run"] is True and document["older_than_days"] == 90
    assert document["events"]["count"] == _left(database_url) > 0
    assert document["events"]["bytes"] > 0 and document["events"]["oldest"].endswith("Z")
    assert events(database_url) == before

    done = json.loads(_orchestrator(database_url, "prune", "--json").stdout)
    assert done["dry_run"] is False
    assert done["events"] == document["events"] and done["inbox"] == document["inbox"]
    assert _left(database_url) == 0


def test_bad_options_are_refused_with_exit_2(database_url: str) -> None:
    for args in (("--older-than", "0"), ("--batch", "0"), ("--batch", str(MAX_BATCH + 1))):
        result = _orchestrator(database_url, "prune", *args)
        assert result.returncode == 2, args
    assert MAX_BATCH == LIBRARY_MAX_BATCH


def test_a_prune_killed_between_batches_is_finished_by_the_next_run(database_url: str) -> None:
    _old_trail(database_url)
    # Many more old events, copies of the real ones, so one-row batches take a while.
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO checkout_events SELECT gen_random_uuid(), seq, at, kind, from_state, "
            "to_state, step, attempt, worker, http_method, http_path, http_status, latency_ms, "
            "request_body, response_body, error_class, error_type, error_message, detail "
            "FROM checkout_events, generate_series(1, 40)"
        )
    total = _left(database_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "--debug", "prune", "--batch", "1"],
        env=clean_environment(ORCHESTRATOR_DATABASE_URL=database_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "pruned 1 events" in line:  # one batch committed
                os.kill(process.pid, signal.SIGKILL)
                break
    finally:
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    left = _left(database_url)
    assert 0 < left < total  # killed mid-way: some batches done, the rest whole

    again = _orchestrator(database_url, "prune", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["events"]["count"] == left
    assert _left(database_url) == 0
    pruned = [row for row in events(database_url).values() if row["detail"]]
    assert all("pruned_at" in row["detail"] for row in pruned if row["kind"] == "violet_call")
