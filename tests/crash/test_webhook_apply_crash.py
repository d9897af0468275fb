"""A webhook applier killed (SIGKILL) after it took the checkout's lease, before it committed.

Its transaction dies with it: the event is still pending, the checkout as it was (no lease left
behind, no audit event, no bag row). The next run applies the event, once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import psycopg

from orchestrator.api import Orchestrator
from orchestrator.store import inbox
from orchestrator.store.bags import CRASH_AFTER_LEASE
from tests.fixtures.db import libpq_url
from tests.fixtures.orchestrator import checkout_request
from tests.fixtures.webhooks import ROOT, receiver_env


def _apply(database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.webhooks", "apply", "--until-idle", "--json"],
        env=receiver_env(database_url, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _look(database_url: str, checkout_id: Any, event_id: str) -> dict[str, Any]:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        state, attempts = conn.execute(
            "SELECT state, attempts FROM webhook_inbox WHERE event_id = %s", (event_id,)
        ).fetchone() or (None, None)
        owner, epoch = conn.execute(
            "SELECT lease_owner, lease_epoch FROM checkouts WHERE id = %s", (checkout_id,)
        ).fetchone() or (None, None)
        applied = conn.execute(
            "SELECT count(*) FROM checkout_events WHERE checkout_id = %s "
            "AND kind = 'webhook_applied'",
            (checkout_id,),
        ).fetchone()
        bags = conn.execute(
            "SELECT status FROM checkout_bags WHERE checkout_id = %s", (checkout_id,)
        ).fetchall()
    return {
        "event": (state, attempts),
        "lease": (owner, epoch),
        "applied": applied[0] if applied else None,
        "bags": [b[0] for b in bags],
    }


async def test_an_applier_killed_mid_apply_leaves_the_event_pending_and_it_applies_once(
    database_url: str, orch: Orchestrator
) -> None:
    checkout = await orch.start(checkout_request())
    assert checkout.violet_order_id is not None
    order = (await orch.client.get_order(checkout.violet_order_id)).model_dump(mode="json")
    event = inbox.InboxEvent("evt-killed", "ORDER_UPDATED", order, checkout.violet_order_id)
    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as conn:
        await inbox.insert(conn, event)
    before = _look(database_url, checkout.id, "evt-killed")

    killed = _apply(
        database_url, ORCHESTRATOR_TEST_MODE="1", ORCHESTRATOR_CRASH_AT=CRASH_AFTER_LEASE
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _look(database_url, checkout.id, "evt-killed") == before
    assert before["event"] == ("pending", 0) and before["lease"][0] is None

    survivor = _apply(database_url)
    assert survivor.returncode == 0, survivor.stderr
    assert json.loads(survivor.stdout)["applied"] == 1
    after = _look(database_url, checkout.id, "evt-killed")
    assert after["event"] == ("applied", 1)
    assert after["applied"] == 1 and after["bags"] == ["ACCEPTED"]
    assert after["lease"] == (None, before["lease"][1] + 1)  # taken once, and given back
