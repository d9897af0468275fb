"""The changes feed at the store: appended in the writer's transaction, read with a cursor that
never passes a row committed later, append-only, a NOTIFY per appending transaction, no secrets.

Each test plays its actors on their own psycopg connections, as separate processes would.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from orchestrator.store import changes
from orchestrator.store.schema import SQLSTATE_APPEND_ONLY, SQLSTATE_TRIPWIRE
from tests.fixtures.db import libpq_url

CHANNEL = "orchestrator_changes"


@pytest.fixture
async def connect(database_url: str) -> AsyncIterator[Any]:
    """`await connect(autocommit=...)`: another session on the test database, closed after."""
    opened: list[psycopg.AsyncConnection[Any]] = []

    async def _connect(*, autocommit: bool = True) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(libpq_url(database_url), autocommit=autocommit)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        await conn.close()


async def settled(
    reader: psycopg.AsyncConnection[Any], count: int, after: str = changes.START
) -> list[changes.Change]:
    """The feed after `after` once it shows `count` changes (at most 30 s).

    A change shows once every transaction older than it has ended, on the whole server: other
    databases' transactions (other tests, the next test database being copied) hold it back
    for as long as they run, so a committed change is awaited, not expected at once."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        found = await changes.read(reader, after=after)
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.02)


async def _append(conn: psycopg.AsyncConnection[Any], kind: str, **detail: Any) -> uuid.UUID:
    checkout_id = uuid.uuid4()
    await changes.append(conn, checkout_id, f"order-{checkout_id.hex[:8]}", kind, detail)
    return checkout_id


async def test_changes_are_read_in_commit_order_page_by_page(connect: Any) -> None:
    writer = await connect()
    reader = await connect()
    ids = [await _append(writer, changes.CHECKOUT_FINISHED, n=n) for n in range(3)]
    async with writer.transaction():  # two in one transaction: both, in append order
        ids.append(await _append(writer, changes.CHECKOUT_WAITING, n=3))
        ids.append(await _append(writer, changes.BAG_STATUS, n=4))

    everything = await settled(reader, 5)
    assert [c.checkout_id for c in everything] == ids
    assert [c.detail for c in everything] == [{"n": n} for n in range(5)]
    assert [c.kind for c in everything][-2:] == [changes.CHECKOUT_WAITING, changes.BAG_STATUS]
    assert len({c.id for c in everything}) == 5
    assert all(c.app_order_id == f"order-{c.checkout_id.hex[:8]}" for c in everything)

    first = await changes.read(reader, limit=2)
    rest = await changes.read(reader, after=first[-1].cursor, limit=100)
    assert first + rest == everything
    assert await changes.read(reader, after=everything[-1].cursor) == []


async def test_the_cursor_never_passes_a_row_that_an_older_transaction_commits_later(
    connect: Any,
) -> None:
    older = await connect(autocommit=False)
    newer = await connect()
    reader = await connect()
    # The older transaction has its id before the newer one commits, and appends only after.
    await older.execute("SELECT pg_current_xact_id()")
    newer_id = await _append(newer, changes.CHECKOUT_FINISHED)

    assert await changes.read(reader) == []  # the older one could still append before it

    older_id = await _append(older, changes.CHECKOUT_WAITING)
    assert await changes.read(reader) == []
    await older.commit()

    both = await settled(reader, 2)
    assert [c.checkout_id for c in both] == [older_id, newer_id]
    assert both[0].id > both[1].id  # the id alone would have passed the older row by
    assert await changes.read(reader, after=both[-1].cursor) == []
    later = await _append(newer, changes.BAG_STATUS)
    assert [c.checkout_id for c in await settled(reader, 1, both[-1].cursor)] == [later]


async def test_a_running_transaction_that_rolls_back_holds_the_feed_until_it_ends(
    connect: Any,
) -> None:
    older = await connect(autocommit=False)
    writer = await connect()
    reader = await connect()
    await _append(older, changes.CHECKOUT_WAITING)
    committed = await _append(writer, changes.CHECKOUT_FINISHED)
    assert await changes.read(reader) == []
    await older.rollback()
    assert [c.checkout_id for c in await settled(reader, 1)] == [committed]


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "0",
        "abc",
        "1:x",
        "-1:2",
        "1:-2",
        " 1:2",
        "1:2:3",
        "\uff11:2",  # a full-width digit: a digit to Python, not to PostgreSQL
        "18446744073709551616:1",  # past xid8
        "1:" + "9" * 19,  # past bigint
    ],
)
async def test_a_bad_cursor_is_refused_naming_it(connect: Any, cursor: str) -> None:
    reader = await connect()
    with pytest.raises(ValueError, match="not a changes cursor") as refused:
        await changes.read(reader, after=cursor)
    assert repr(cursor[:40]) in str(refused.value)


async def test_the_largest_cursor_is_read_as_one(connect: Any) -> None:
    reader = await connect()
    await _append(reader, changes.CHECKOUT_FINISHED)
    assert await changes.read(reader, after=f"{2**64 - 1}:{2**63 - 1}") == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE checkout_changes SET kind = 'bag_status'",
        "DELETE FROM checkout_changes",
        "TRUNCATE checkout_changes",
    ],
)
async def test_the_feed_is_append_only(connect: Any, statement: str) -> None:
    conn = await connect()
    await _append(conn, changes.CHECKOUT_FINISHED)
    with pytest.raises(psycopg.Error) as refused:
        await conn.execute(statement)
    assert refused.value.sqlstate == SQLSTATE_APPEND_ONLY
    assert len(await settled(conn, 1)) == 1


async def _notifications(listener: psycopg.AsyncConnection[Any], wait: float) -> list[str]:
    """The channels of the notifications `listener` receives within `wait` seconds."""
    received: list[str] = []

    async def collect() -> None:
        async for notify in listener.notifies():
            received.append(notify.channel)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), timeout=wait)
    return received


async def test_an_appending_transaction_notifies_followers_once(connect: Any) -> None:
    listener = await connect()
    await listener.execute(f"LISTEN {CHANNEL}")
    writer = await connect()
    async with writer.transaction():
        for _ in range(3):
            await _append(writer, changes.BAG_STATUS)
    assert await _notifications(listener, 1.0) == [CHANNEL]


async def test_a_statement_that_appends_nothing_notifies_nobody(connect: Any) -> None:
    """Every step write carries an empty append: it must not wake every follower."""
    listener = await connect()
    await listener.execute(f"LISTEN {CHANNEL}")
    writer = await connect()
    await writer.execute(
        "WITH ch AS (INSERT INTO checkout_changes (checkout_id, kind) "
        "SELECT %(id)s, 'checkout_finished' WHERE false) SELECT 1",
        {"id": uuid.uuid4()},
    )
    async with writer.transaction(force_rollback=True):  # appended, then rolled back
        await _append(writer, changes.BAG_STATUS)
    assert await _notifications(listener, 0.5) == []
    assert await changes.read(writer) == []


SECRET_DETAILS = pytest.mark.parametrize(
    ("detail", "secret"),
    [
        ({"message": "declined card 4242424242424242"}, "4242424242424242"),
        ({"reason": "handed out pi_3Mtw_secret_hunter2"}, "pi_3Mtw_secret_hunter2"),
        ({"payment": {"card_cvc": "987"}}, "987"),
    ],
    ids=["card-number", "client-secret", "cvc-key"],
)


@SECRET_DETAILS
async def test_a_secret_in_the_detail_is_redacted_before_the_write(
    connect: Any, detail: dict[str, Any], secret: str
) -> None:
    """The change is kept (its outcome must not be lost) and the secret is not."""
    conn = await connect()
    checkout_id = uuid.uuid4()
    await changes.append(conn, checkout_id, None, changes.ACTION_SETTLED, detail)
    found = await settled(conn, 1)
    assert [change.checkout_id for change in found] == [checkout_id]
    stored = await (
        await conn.execute(
            "SELECT detail::text FROM checkout_changes WHERE checkout_id = %s", (checkout_id,)
        )
    ).fetchone()
    assert stored is not None and secret not in stored[0]


@SECRET_DETAILS
async def test_a_secret_written_past_the_redaction_is_refused_by_the_tripwire(
    connect: Any, detail: dict[str, Any], secret: str
) -> None:
    """The database refuses what a writer that skips `changes.append` would leak."""
    conn = await connect()
    with pytest.raises(psycopg.Error) as refused:
        await conn.execute(
            "INSERT INTO checkout_changes (checkout_id, kind, detail) VALUES (%s, %s, %s)",
            (uuid.uuid4(), changes.ACTION_SETTLED, Jsonb(detail)),
        )
    assert refused.value.sqlstate == SQLSTATE_TRIPWIRE
    assert await changes.read(conn) == []
