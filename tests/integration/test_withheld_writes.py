"""A step write the database's tripwire refuses for its text is recorded with the text withheld:
the state and the outcome are never lost to a secret in a message (store/withhold.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import psycopg
import pytest

from orchestrator.api import Orchestrator
from orchestrator.errors import InvalidRequest
from orchestrator.store.records import CheckoutRow, Event
from tests.fixtures.db import libpq_url
from tests.fixtures.orchestrator import DIGITAL, TOKEN, checkout_request

WORKER = "test-withheld"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
SECRETS = ("4242424242424242", "4242 4242 4242 4242", "pi_1_secret_2", "X-Violet-Token: abc", JWT)


async def _leased(orch: Orchestrator) -> CheckoutRow:
    checkout = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN), run=False)
    claim = await orch.repo.claim(checkout.id, worker=WORKER, lease_seconds=30)
    return claim.row


def _created_with_secrets(row: CheckoutRow) -> list[Event]:
    """The create_cart outcome, with a secret in every column the tripwire guards (text the
    client's redaction would have caught: this is the database's last line)."""
    row.state = "created"
    row.violet_order_id = 80000 + int(uuid.uuid4().int % 10_000_000)
    row.total = 1234
    row.pending_step = None
    row.in_flight = False
    row.bags = [{"bag_id": 7, "merchant_name": "card 4242424242424242", "status": "IN_PROGRESS"}]
    row.last_error = {"class": "permanent", "type": "odd", "message": "X-Violet-Token: abc"}
    events = [
        Event(
            "violet_call",
            step="create_cart",
            http_status=200,
            response_body={"errors": [{"type": "EXTERNAL", "message": "pi_1_secret_2"}]},
        ),
        Event("error", step="create_cart", error_class="permanent", error_message=f"t={JWT}"),
        Event(
            "transition",
            from_state="new",
            to_state="created",
            step="create_cart",
            detail={"cart": {"cart_id": 1, "note": "4242 4242 4242 4242"}},
        ),
    ]
    return events


async def _stored(database_url: str, checkout_id: uuid.UUID) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url)) as conn:
        row = await (
            await conn.execute(
                "SELECT row_to_json(c)::text, "
                "(SELECT json_agg(e ORDER BY seq)::text FROM checkout_events e "
                " WHERE e.checkout_id = c.id), "
                "c.state, c.violet_order_id, c.total "
                "FROM checkouts c WHERE id = %s",
                (checkout_id,),
            )
        ).fetchone()
    assert row is not None
    return {
        "text": " ".join(str(part) for part in row[:2]),
        "state": row[2],
        "order": row[3],
        "total": row[4],
    }


async def test_a_refused_write_is_recorded_with_its_text_withheld(
    orch: Orchestrator, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    row = await _leased(orch)
    events = _created_with_secrets(row)
    with caplog.at_level(logging.WARNING, logger="orchestrator.store"):
        await orch.repo.write(row, events, worker=WORKER, lease_seconds=30, keep_lease=False)
    stored = await _stored(database_url, row.id)
    assert (stored["state"], stored["order"], stored["total"]) == (
        "created",
        row.violet_order_id,
        1234,
    )
    for secret in SECRETS:
        assert secret not in stored["text"]
        assert secret not in caplog.text
    assert "[WITHHELD: checkout" in stored["text"]  # the marker names what the tripwire found
    assert "refused the text of a write" in caplog.text
    assert '"transition"' in stored["text"] and '"IN_PROGRESS"' in stored["text"]
    assert row.bags[0]["status"] == "IN_PROGRESS" and "4242" not in str(row.bags)
    assert row.last_error is not None and "X-Violet" not in row.last_error["message"]


async def test_a_refused_write_never_costs_its_neighbours_in_a_shared_statement(
    orch: Orchestrator, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Writes of several checkouts share one statement (group commit): the refused one is made
    again alone with its text withheld, the others keep theirs."""
    bad, good = await _leased(orch), await _leased(orch)
    bad_events = _created_with_secrets(bad)
    good.state = "created"
    good.violet_order_id = bad.violet_order_id + 1  # type: ignore[operator]
    good_events = [Event("error", step="create_cart", error_message="out of stock, try later")]
    with caplog.at_level(logging.DEBUG, logger="orchestrator.store.group_commit"):
        await asyncio.gather(
            orch.repo.write(bad, bad_events, worker=WORKER, lease_seconds=30, keep_lease=False),
            orch.repo.write(good, good_events, worker=WORKER, lease_seconds=30, keep_lease=False),
        )
    assert "grouped write of 2 failed" in caplog.text
    assert (await _stored(database_url, bad.id))["state"] == "created"
    kept = await _stored(database_url, good.id)
    assert kept["state"] == "created" and "out of stock, try later" in kept["text"]


async def test_an_insert_the_tripwire_refuses_is_an_invalid_request(orch: Orchestrator) -> None:
    """A request is the caller's input, not an outcome: refused, it is reported as invalid (exit
    2 in the CLI), never stored withheld. Validation applies the same rules first."""
    row = CheckoutRow.registered(
        app_order_id=f"withheld-{uuid.uuid4().hex[:8]}",
        request={"payment": {"type": "card", "cvc": "987"}},
        payment_kind="card",
        currency="USD",
        first_step="create_cart",
        run=False,
    )
    with pytest.raises(InvalidRequest) as caught:
        await orch.repo.insert(
            row, [Event("created")], worker=WORKER, lease_seconds=30, leased=False
        )
    assert caught.value.fields[0][0] == "request" and "cvc_key" in str(caught.value)
    assert "987" not in str(caught.value)
