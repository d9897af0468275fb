"""Reading what is recorded of an order's bags, and the pool after-life work runs on.

The writes are store/bags.py's `record`, under the checkout's lease; these reads take no lease:
a bag row only ever moves forward, so a read is at worst a moment old.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from orchestrator import bag_states, states
from orchestrator.store import database
from orchestrator.store.query_runner import QueryRunner

__all__ = [
    "bag_rows",
    "checkout_of_order",
    "pool",
    "recorded_bags",
    "stale_orders",
    "statuses",
]

# After-life statements wait briefly for locks (a checkout's row itself is taken with NOWAIT).
_LOCK_TIMEOUT_S: Final = 2.0
_STATEMENT_TIMEOUT_S: Final = 30.0


async def bag_rows(conn: AsyncConnection[Any], checkout_id: UUID) -> list[dict[str, Any]]:
    """A checkout's bag rows, by bag id (what tests and read-backs look at)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_BAGS_SQL, {"id": checkout_id})
        return await cur.fetchall()


async def recorded_bags(runner: QueryRunner, checkout_id: UUID) -> list[dict[str, Any]]:
    """`bag_rows` on any `QueryRunner` (the console reads through the library's engine)."""
    return await runner.rows(_BAGS_SQL, {"id": checkout_id})


_BAGS_SQL: Final = "SELECT * FROM checkout_bags WHERE checkout_id = %(id)s ORDER BY bag_id"


def statuses(rows: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """`{bag_id: status}` of bag rows."""
    return {row["bag_id"]: row["status"] for row in rows}


async def checkout_of_order(conn: AsyncConnection[Any], violet_order_id: int) -> UUID | None:
    """Our checkout of a Violet order, if it is ours."""
    cursor = await conn.execute(
        "SELECT id FROM checkouts WHERE violet_order_id = %(order_id)s",
        {"order_id": violet_order_id},
    )
    found = await cursor.fetchone()
    return None if found is None else UUID(str(found[0]))


_STALE_SQL: Final = f"""
SELECT c.id, c.violet_order_id, c.app_order_id, coalesce(b.heard, c.finished_at) AS last_news
FROM checkouts c
LEFT JOIN LATERAL (
    SELECT max(updated_at) AS heard, count(*) AS known,
           bool_and(status IN {bag_states.sql_list(bag_states.FINAL_STATUSES)}) AS all_final
    FROM checkout_bags WHERE checkout_id = c.id
) b ON true
WHERE c.state = '{states.SUBMITTED}' AND c.violet_order_id IS NOT NULL
  AND NOT (b.known > 0 AND b.known >= jsonb_array_length(c.bags) AND b.all_final)
  AND coalesce(b.heard, c.finished_at) < now() - %(older_than)s * interval '1 second'
ORDER BY last_news
LIMIT %(limit)s
"""


async def stale_orders(
    conn: AsyncConnection[Any], *, older_than: float, limit: int
) -> list[dict[str, Any]]:
    """Submitted checkouts with a bag not final whose last news (the newest bag row, or the
    finish when none) is older than `older_than` seconds, stalest first: what a read-back fills."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_STALE_SQL, {"older_than": older_than, "limit": limit})
        return await cur.fetchall()


@contextlib.asynccontextmanager
async def pool(
    url: Any, *, size: int = 2, wait: bool = True, wait_seconds: float = 30.0
) -> AsyncIterator[AsyncConnectionPool]:
    """A small pool of its own for after-life work (autocommit; short lock and statement
    timeouts), open for as long as the block runs. `wait` False opens it without waiting for a
    first connection: a database down shows (PoolTimeout, after `wait_seconds`) when it is used."""
    timeouts = database.session_options(
        url, lock_timeout=_LOCK_TIMEOUT_S, statement_timeout=_STATEMENT_TIMEOUT_S
    )
    opened = AsyncConnectionPool(
        database.libpq_conninfo(url),
        min_size=1,
        max_size=size,
        timeout=wait_seconds,
        open=False,
        kwargs={"autocommit": True, "application_name": "orchestrator-after-submit", **timeouts},
    )
    await opened.open(wait=wait, timeout=wait_seconds)
    try:
        yield opened
    finally:
        await opened.close()
