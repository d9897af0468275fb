"""Grouped step writes on a real PostgreSQL: same rows as lone writes, failures kept private.

The repository coalesces step writes that queue up behind busy statements (group commit in the
client). These tests force grouping (one statement slot, writes arriving while it is busy) and
check what each caller and the database end up with.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.api import Orchestrator
from orchestrator.errors import LeaseLost
from orchestrator.store.records import CheckoutRow, Event
from orchestrator.store.repository import Repository
from tests.fixtures.db import libpq_url
from tests.fixtures.orchestrator import TOKEN, checkout_request

WORKER = "worker-test"


@pytest.fixture
async def repo(engine: AsyncEngine, database_url: str) -> AsyncIterator[Repository]:
    pool = AsyncConnectionPool(
        libpq_url(database_url), min_size=1, max_size=3, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True)
    try:
        yield Repository(engine, pool, write_slots=1)
    finally:
        await pool.close()


async def leased_rows(repo: Repository, n: int) -> list[CheckoutRow]:
    rows = []
    for _ in range(n):
        row = CheckoutRow.registered(
            app_order_id=f"grp-{uuid.uuid4().hex[:10]}",
            request={"app_order_id": "x"},
            payment_kind="token",
            currency="USD",
            first_step="create_cart",
            run=True,
        )
        inserted = await repo.insert(
            row, [Event("created")], worker=WORKER, lease_seconds=30, leased=True
        )
        assert inserted is not None
        rows.append(inserted)
    return rows


async def advance(
    repo: Repository, row: CheckoutRow, detail: dict[str, object] | None = None
) -> None:
    row.state = "created"
    row.violet_order_id = abs(hash(row.id)) % 10**9
    row.bags = [{"bag_id": 1, "status": "IN_PROGRESS"}]
    await repo.write(
        row,
        [
            Event("violet_call", step="create_cart", http_status=200, response_body={"id": 1}),
            Event("transition", from_state="new", to_state="created", detail=detail),
            Event("step_started", step="apply_customer", attempt=1),
        ],
        worker=WORKER,
        lease_seconds=30,
        keep_lease=True,
        start_step=True,
    )


async def write_grouped(
    repo: Repository, rows: list[CheckoutRow], details: list[dict[str, object] | None]
) -> list[object]:
    """First write alone; the others queue behind it and leave as one statement."""
    first = asyncio.ensure_future(advance(repo, rows[0], details[0]))
    await asyncio.sleep(0)
    rest = [
        asyncio.ensure_future(advance(repo, r, d))
        for r, d in zip(rows[1:], details[1:], strict=True)
    ]
    return await asyncio.gather(first, *rest, return_exceptions=True)


async def db_state(database_url: str, checkout_id: uuid.UUID) -> tuple[str, int, list[int]]:
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url)) as conn:
        cur = await conn.execute(
            "SELECT state, event_seq FROM checkouts WHERE id = %s", (checkout_id,)
        )
        state, event_seq = await cur.fetchone()  # type: ignore[misc]
        cur = await conn.execute(
            "SELECT seq FROM checkout_events WHERE checkout_id = %s ORDER BY seq", (checkout_id,)
        )
        seqs = [r[0] for r in await cur.fetchall()]
    return state, event_seq, seqs


async def test_grouped_writes_store_what_lone_writes_store(
    repo: Repository, database_url: str
) -> None:
    rows = await leased_rows(repo, 5)
    results = await write_grouped(repo, rows, [None] * 5)
    assert results == [None] * 5
    group = repo.group_commit
    assert group is not None and (group.statements, group.writes) == (2, 5)  # 1 alone + 4 grouped
    for row in rows:
        assert await db_state(database_url, row.id) == ("created", 4, [1, 2, 3, 4])
        assert row.version == 1 and row.lease_expires_at is not None and row.event_seq == 4


async def test_a_fenced_write_in_a_group_fails_alone(
    repo: Repository, engine: AsyncEngine, database_url: str
) -> None:
    rows = await leased_rows(repo, 4)
    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as conn:
        await conn.execute(
            "UPDATE checkouts SET lease_epoch = lease_epoch + 1 WHERE id = %s", (rows[2].id,)
        )
    results = await write_grouped(repo, rows, [None] * 4)
    assert results[0] is None and results[1] is None and results[3] is None
    assert isinstance(results[2], LeaseLost)
    assert rows[2].event_seq == 1  # restored: nothing of this write was stored
    assert await db_state(database_url, rows[2].id) == ("new", 1, [1])
    assert (await db_state(database_url, rows[3].id))[0] == "created"


async def test_a_write_the_database_refuses_for_its_text_lands_alone_with_it_withheld(
    repo: Repository, database_url: str
) -> None:
    rows = await leased_rows(repo, 4)
    card = {"note": "4242 4242 4242 4242"}  # the tripwire refuses a card number anywhere
    results = await write_grouped(repo, rows, [None, None, card, None])
    assert results == [None] * 4
    # Made again alone with its text withheld (store/withhold.py): the outcome is recorded.
    assert await db_state(database_url, rows[2].id) == ("created", 4, [1, 2, 3, 4])
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url)) as conn:
        cur = await conn.execute(
            "SELECT detail->>'note' FROM checkout_events WHERE checkout_id = %s AND seq = 3",
            (rows[2].id,),
        )
        (note,) = await cur.fetchone()  # type: ignore[misc]
    assert note.startswith("[WITHHELD: checkout_events.detail held card_number: ")
    for i in (0, 1, 3):
        assert await db_state(database_url, rows[i].id) == ("created", 4, [1, 2, 3, 4])


async def test_concurrent_checkouts_share_statements_and_keep_their_trail(
    orch: Orchestrator,
) -> None:
    await orch.start(checkout_request(payment=TOKEN))  # its trail also holds the first login
    alone = await orch.start(checkout_request(payment=TOKEN))
    expected = [e.kind for e in await orch.history(alone.id)]
    group = orch.repo.group_commit
    assert group is not None
    before = (group.statements, group.writes)
    done = await asyncio.gather(*(orch.start(checkout_request(payment=TOKEN)) for _ in range(24)))
    assert {c.state for c in done} == {"submitted"}
    statements, writes = group.statements - before[0], group.writes - before[1]
    assert writes == 24 * 6 and statements < writes  # some statements carried several writes
    for checkout in done:
        events = await orch.history(checkout.id)
        assert [e.kind for e in events] == expected, ([e.kind for e in events], expected)
        assert [e.seq for e in events] == list(range(1, len(expected) + 1))


async def test_grouped_inserts_keep_one_checkout_per_app_order_id(orch: Orchestrator) -> None:
    """A burst of starts shares insert statements; a repeated app_order_id still gets the one
    checkout that exists (never a second cart), even when both arrive in the same burst."""
    requests = [checkout_request(payment=TOKEN) for _ in range(12)]
    twice = requests[5]
    group = orch.repo.insert_group
    assert group is not None
    before = (group.statements, group.writes)
    done = await asyncio.gather(*(orch.start(r) for r in [*requests, twice]))
    assert (group.writes - before[1]) == 13 and (group.statements - before[0]) < 13
    assert {c.state for c in done[:12]} == {"submitted"}
    assert done[12].id == done[5].id  # the repeat got the existing checkout, in whatever state
    async with orch.engine.connect() as conn:
        count = await conn.exec_driver_sql(
            "SELECT count(*) FROM checkouts WHERE app_order_id = %(a)s",
            {"a": twice["app_order_id"]},
        )
        assert count.scalar_one() == 1
