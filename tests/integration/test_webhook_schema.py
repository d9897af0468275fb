"""Migration 0008 in the database: the bag graph as declared, its guard, the inbox's rules."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from orchestrator import bag_states
from orchestrator.store import inbox
from orchestrator.store.schema import (
    SQLSTATE_APPEND_ONLY,
    SQLSTATE_ILLEGAL_TRANSITION,
    SQLSTATE_TRIPWIRE,
)
from tests.fixtures.db import libpq_url
from tests.secret_cases import CASES, SecretCase, as_json, params

DATABASE_CASES = [case for case in CASES if case.applies_in("database")]
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def conn(shared_database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(libpq_url(shared_database_url), autocommit=True) as connection:
        yield connection


@pytest.fixture
async def aconn(shared_database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    url = libpq_url(shared_database_url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        yield connection


def refused(conn: psycopg.Connection[Any], statement: str, args: Any = None) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement, args)
    return caught.value


def new_bag(conn: psycopg.Connection[Any], status: str) -> tuple[uuid.UUID, int]:
    checkout_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO checkouts (id, app_order_id, state, request, payment_kind, currency) "
        "VALUES (%s, %s, 'new', '{}', 'token', 'USD')",
        (checkout_id, f"bags-{checkout_id.hex[:12]}"),
    )
    bag_id = uuid.uuid4().int % 10**12
    conn.execute(
        "INSERT INTO checkout_bags (checkout_id, bag_id, merchant_id, status, status_at) "
        "VALUES (%s, %s, 10, %s, %s)",
        (checkout_id, bag_id, status, NOW),
    )
    return checkout_id, bag_id


def set_status(conn: psycopg.Connection[Any], bag: tuple[uuid.UUID, int], status: str) -> None:
    conn.execute(
        "UPDATE checkout_bags SET status = %s WHERE checkout_id = %s AND bag_id = %s",
        (status, *bag),
    )


# -- the bag graph ------------------------------------------------------------------------------


def test_the_migrated_bag_moves_are_the_declared_ones(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute("SELECT from_status, to_status FROM checkout_bag_transitions").fetchall()
    assert sorted(rows) == bag_states.legal_moves()
    check = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conname = 'ck_checkout_bags_status'"
    ).fetchone()
    assert check is not None
    for status in bag_states.STATUSES:
        assert f"'{status}'" in check[0]


@pytest.mark.parametrize(("source", "dest"), bag_states.legal_moves())
def test_every_legal_bag_move_is_accepted(
    conn: psycopg.Connection[Any], source: str, dest: str
) -> None:
    bag = new_bag(conn, source)
    set_status(conn, bag, dest)


ILLEGAL = [
    (source, dest)
    for source in bag_states.STATUSES
    for dest in bag_states.STATUSES
    if source != dest and not bag_states.is_legal(source, dest)
]


@pytest.mark.parametrize(("source", "dest"), ILLEGAL)
def test_every_other_bag_move_is_refused(
    conn: psycopg.Connection[Any], source: str, dest: str
) -> None:
    bag = new_bag(conn, source)
    error = refused(
        conn,
        "UPDATE checkout_bags SET status = %s WHERE checkout_id = %s AND bag_id = %s",
        (dest, *bag),
    )
    assert error.sqlstate == SQLSTATE_ILLEGAL_TRANSITION
    assert f"illegal bag transition {source} -> {dest}" in str(error)


def test_a_bag_may_be_first_seen_in_any_status_but_an_unknown_one(
    conn: psycopg.Connection[Any],
) -> None:
    for status in bag_states.STATUSES:
        new_bag(conn, status)
    with pytest.raises(psycopg.errors.CheckViolation):
        new_bag(conn, "SHIPPED")


def test_amounts_change_without_a_move(conn: psycopg.Connection[Any]) -> None:
    bag = new_bag(conn, bag_states.PARTIALLY_REFUNDED)
    conn.execute(
        "UPDATE checkout_bags SET refunded_amount = 500, currency = 'USD' "
        "WHERE checkout_id = %s AND bag_id = %s",
        bag,
    )
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "UPDATE checkout_bags SET refunded_amount = -1 WHERE checkout_id = %s AND bag_id = %s",
            bag,
        )


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO checkout_bag_transitions VALUES ('REFUNDED', 'IN_PROGRESS')",
        "UPDATE checkout_bag_transitions SET to_status = 'IN_PROGRESS'",
        "DELETE FROM checkout_bag_transitions",
        "TRUNCATE checkout_bag_transitions",
    ],
)
def test_the_bag_graph_cannot_be_changed_by_plain_sql(
    conn: psycopg.Connection[Any], statement: str
) -> None:
    assert refused(conn, statement).sqlstate == SQLSTATE_APPEND_ONLY


def test_a_temporary_table_cannot_stand_in_for_the_bag_graph(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("CREATE TEMP TABLE checkout_bag_transitions (LIKE checkout_bag_transitions)")
    try:
        conn.execute("INSERT INTO checkout_bag_transitions VALUES ('REFUNDED', 'ACCEPTED')")
        bag = new_bag(conn, bag_states.REFUNDED)
        error = refused(
            conn,
            "UPDATE checkout_bags SET status = 'ACCEPTED' WHERE checkout_id = %s AND bag_id = %s",
            bag,
        )
        assert error.sqlstate == SQLSTATE_ILLEGAL_TRANSITION
    finally:
        conn.execute("DROP TABLE pg_temp.checkout_bag_transitions")


@pytest.mark.parametrize("case", params([case for case in DATABASE_CASES if case.is_text]))
def test_bag_text_columns_are_behind_the_tripwire(
    conn: psycopg.Connection[Any], case: SecretCase
) -> None:
    bag = new_bag(conn, bag_states.ACCEPTED)
    error = refused(
        conn,
        "UPDATE checkout_bags SET fulfillment_status = %s WHERE checkout_id = %s AND bag_id = %s",
        (case.text, *bag),
    )
    assert error.sqlstate == SQLSTATE_TRIPWIRE


# -- the inbox ----------------------------------------------------------------------------------


def event(**overrides: Any) -> inbox.InboxEvent:
    values: dict[str, Any] = {
        "event_id": f"evt-{uuid.uuid4().hex}",
        "event_type": "ORDER_UPDATED",
        "body": {"id": 1, "status": "COMPLETED"},
        "violet_order_id": 1,
    }
    values.update(overrides)
    return inbox.InboxEvent(**values)


async def test_an_event_is_stored_once_whatever_the_redeliveries(
    aconn: psycopg.AsyncConnection[Any],
) -> None:
    first = event()
    assert await inbox.insert(aconn, first)
    changed = event(event_id=first.event_id, event_type="ORDER_CANCELED", body={"other": 1})
    assert not await inbox.insert(aconn, changed)
    cursor = await aconn.execute(
        "SELECT event_type, body, state FROM webhook_inbox WHERE event_id = %s",
        (first.event_id,),
    )
    assert await cursor.fetchall() == [("ORDER_UPDATED", first.body, "pending")]


@pytest.mark.parametrize("case", params(DATABASE_CASES))
async def test_the_store_redacts_what_the_tripwire_would_refuse(
    aconn: psycopg.AsyncConnection[Any], case: SecretCase
) -> None:
    stored = event(body={"order": as_json(case)})
    assert await inbox.insert(aconn, stored)


@pytest.mark.parametrize("case", params(DATABASE_CASES))
def test_the_tripwire_refuses_a_secret_in_an_inbox_body(
    conn: psycopg.Connection[Any], case: SecretCase
) -> None:
    error = refused(
        conn,
        "INSERT INTO webhook_inbox (event_id, event_type, body) VALUES (%s, 'ORDER_UPDATED', %s)",
        (f"evt-{uuid.uuid4().hex}", Jsonb({"order": as_json(case)})),
    )
    assert error.sqlstate == SQLSTATE_TRIPWIRE
    assert "webhook_inbox.body" in str(error)


async def test_claims_skip_what_another_worker_holds_and_settled_events_are_frozen(
    aconn: psycopg.AsyncConnection[Any], shared_database_url: str
) -> None:
    await aconn.execute("UPDATE webhook_inbox SET state = 'ignored' WHERE state = 'pending'")
    ids = [event().event_id for _ in range(4)]
    for event_id in ids:
        assert await inbox.insert(aconn, event(event_id=event_id))
    url = libpq_url(shared_database_url)
    other = await psycopg.AsyncConnection.connect(url, autocommit=True)
    async with other, aconn.transaction():
        mine = await inbox.claim_pending(aconn, limit=2)
        assert [row.event_id for row in mine] == ids[:2]  # arrival order
        async with other.transaction():
            theirs = await inbox.claim_pending(other, limit=10)
            assert [row.event_id for row in theirs] == ids[2:]
            await inbox.settle(other, [row.event_id for row in theirs], inbox.IGNORED, "not ours")
        assert await inbox.settle(aconn, ids[:1], inbox.APPLIED) == 1
        assert await inbox.settle(aconn, ids[1:2], inbox.FAILED, "boom") == 1
    assert await inbox.retry_failed(aconn, ids[1:2]) == 1
    cursor = await aconn.execute(
        "SELECT event_id, state, attempts, applied_at IS NOT NULL, reason FROM webhook_inbox "
        "WHERE event_id = ANY(%s) ORDER BY received_at, event_id",
        (ids,),
    )
    assert await cursor.fetchall() == [
        (ids[0], "applied", 1, True, None),
        (ids[1], "pending", 1, True, "boom"),
        (ids[2], "ignored", 1, True, "not ours"),
        (ids[3], "ignored", 1, True, "not ours"),
    ]
    assert await inbox.settle(aconn, ids[:1], inbox.IGNORED) == 0  # settled: left alone
    with pytest.raises(psycopg.Error) as caught:
        await aconn.execute(
            "UPDATE webhook_inbox SET state = 'pending' WHERE event_id = %s", ids[:1]
        )
    assert caught.value.sqlstate == SQLSTATE_APPEND_ONLY


async def test_settle_refuses_a_state_that_is_not_an_end(
    aconn: psycopg.AsyncConnection[Any],
) -> None:
    with pytest.raises(ValueError, match="pending"):
        await inbox.settle(aconn, ["x"], inbox.PENDING)


async def test_grouped_inserts_tell_each_event_whether_it_was_new(
    aconn: psycopg.AsyncConnection[Any],
) -> None:
    old = event()
    assert await inbox.insert(aconn, old)
    fresh = [event(), event(body={"card": "4242 4242 4242 4242"})]
    assert await inbox.insert_many(aconn, [fresh[0], old, fresh[1]]) == [True, False, True]
    cursor = await aconn.execute(
        "SELECT body FROM webhook_inbox WHERE event_id = %s", (fresh[1].event_id,)
    )
    assert await cursor.fetchall() == [({"card": "[REDACTED]"},)]
