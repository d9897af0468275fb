"""A request the send gate holds back (the step too old to send, or the lease not surely ours) is
not Violet being unreachable: the command says the request was not sent and the checkout is kept
for recovery to reconcile, exits 3, and recovery finishes it with one cart and one submit."""

from __future__ import annotations

import json
import time

import psycopg

from tests.cli.conftest import Cli
from tests.cli.test_database_failures import _popen, _wait_for
from tests.fixtures.db import libpq_url
from tests.fixtures.orchestrator import TOKEN, checkout_request


def _inserts_waiting(database_url: str) -> bool:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE relation = 'checkouts'::regclass AND NOT granted"
        ).fetchone()
    return bool(found and found[0])


def test_a_create_cart_the_send_gate_refuses_exits_3_and_is_left_to_recovery(
    cli: Cli, database_url: str
) -> None:
    request = checkout_request(payment=TOKEN)
    # A create_cart must leave within 2 x 0.5 s of the start of its intent write; that write
    # (the insert) waits behind a table lock for longer, so the request is held back.
    env = {"VIOLET_TOTAL_TIMEOUT": "0.5"}
    with psycopg.connect(libpq_url(database_url)) as holder:
        holder.execute("LOCK TABLE checkouts IN EXCLUSIVE MODE")
        started = _popen(
            cli, "checkout", "start", str(cli.write_request(request)), "--json", env=env
        )
        try:
            _wait_for(lambda: _inserts_waiting(database_url), "the insert to wait for the lock")
            time.sleep(1.5)  # the insert waits past its send window (chooses the moment)
            holder.rollback()
            stdout, stderr = started.communicate(timeout=60)
        finally:
            started.kill()
    assert started.returncode == 3, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "not sent" in errors[0] and "could not be reached" not in errors[0], errors[0]
    assert "kept" in errors[0] and "orchestrator recover" in errors[0], errors[0]
    checkout = json.loads(stdout)
    assert checkout["state"] == "new" and checkout["in_flight"] is True, checkout
    assert checkout["last_error"]["type"] == "VioletSendRefused", checkout["last_error"]

    recovered = cli.run("recover", "--until-idle", "--json", env=env)
    assert recovered.returncode == 0, recovered.stderr
    status = json.loads(cli.run("status", request["app_order_id"], "--json").stdout)
    assert status["state"] == "submitted"
    assert cli.submits(status["violet_order_id"]) == 1
