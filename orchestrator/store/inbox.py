"""The webhook inbox: Violet's events made durable on arrival, settled later by the applier.

The receiver's whole job in the database is `insert`: one autocommitted statement, keyed by the
event id, so a redelivery (Violet retries anything it did not see acknowledged) changes nothing
and is acknowledged again. The body is redacted by the one secret specification before it is
stored (the tripwire on `webhook_inbox.body` refuses anything that slipped through).

The applier claims pending events in arrival order with `FOR UPDATE SKIP LOCKED` inside its own
transaction and settles each one in that transaction: a worker killed mid-apply leaves its
events pending (its transaction rolls back, its row locks go with it) and another worker takes
them; two workers never apply the same event at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from orchestrator import sensitive
from orchestrator.store.group_commit import GroupCommitter

PENDING: Final = "pending"
APPLIED: Final = "applied"
IGNORED: Final = "ignored"
FAILED: Final = "failed"
#: How an event may end; `applied` and `ignored` are final (the database freezes those rows).
SETTLED: Final = frozenset({APPLIED, IGNORED, FAILED})


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """One event as the receiver stores it: what Violet sent, with the ids parsed out. An event
    refused on arrival (its unsigned headers contradict its body, or the database cannot hold
    its body) is stored `ignored` with the `reason`: kept and visible, never applied."""

    event_id: str
    event_type: str
    body: Any
    violet_order_id: int | None = None
    bag_id: int | None = None
    merchant_id: int | None = None
    state: str = PENDING
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class InboxRow:
    """A stored event, as the applier reads it."""

    event_id: str
    event_type: str
    body: Any
    violet_order_id: int | None
    bag_id: int | None
    merchant_id: int | None
    received_at: datetime
    state: str
    attempts: int


INSERT_SQL: Final = (
    "INSERT INTO webhook_inbox "
    "(event_id, event_type, body, violet_order_id, bag_id, merchant_id, state, reason) "
    "VALUES (%(event_id)s, %(event_type)s, %(body)s, %(violet_order_id)s, %(bag_id)s, "
    "%(merchant_id)s, %(state)s, %(reason)s) ON CONFLICT (event_id) DO NOTHING"
)


def _row(event: InboxEvent) -> dict[str, Any]:
    """The row's values, the body redacted (never stored as received)."""
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "body": sensitive.redact_json(event.body),
        "violet_order_id": event.violet_order_id,
        "bag_id": event.bag_id,
        "merchant_id": event.merchant_id,
        "state": event.state,
        "reason": None if event.reason is None else sensitive.redact_text(event.reason)[:500],
    }


def insert_params(event: InboxEvent) -> dict[str, Any]:
    """The parameters of `INSERT_SQL` for `event`."""
    row = _row(event)
    row["body"] = Jsonb(row["body"])
    return row


async def insert(conn: AsyncConnection[Any], event: InboxEvent) -> bool:
    """Store `event` unless its id is stored already; True when this call stored it.

    One statement: on an autocommit connection it is durable when this returns.
    """
    cursor = await conn.execute(INSERT_SQL, insert_params(event))
    return cursor.rowcount == 1


_INSERT_MANY_SQL: Final = (
    "INSERT INTO webhook_inbox "
    "(event_id, event_type, body, violet_order_id, bag_id, merchant_id, state, reason) "
    "SELECT r.event_id, r.event_type, r.body, r.violet_order_id, r.bag_id, r.merchant_id, "
    "r.state, r.reason "
    "FROM jsonb_to_recordset(%(rows)s) AS r(event_id text, event_type text, body jsonb, "
    "violet_order_id bigint, bag_id bigint, merchant_id bigint, state text, reason text) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)


async def insert_many(conn: AsyncConnection[Any], batch: Sequence[InboxEvent]) -> list[bool]:
    """Store several events (distinct ids) in one statement; per event, whether it was new."""
    cursor = await conn.execute(_INSERT_MANY_SQL, {"rows": Jsonb([_row(e) for e in batch])})
    stored = {row[0] for row in await cursor.fetchall()}
    return [event.event_id in stored for event in batch]


class InboxWriter:
    """Inserts from concurrent requests, grouped into shared statements when they queue up.

    Every request still gets its answer only after its own row is committed; grouping only
    saves commits (each one a WAL flush) and statements when deliveries arrive together. A
    lone delivery leaves at once. See store/group_commit.py.
    """

    def __init__(self, pool: AsyncConnectionPool, *, slots: int = 2) -> None:
        self._pool = pool
        self.group: GroupCommitter[InboxEvent, bool] = GroupCommitter(
            self._one, self._many, slots=slots
        )

    async def insert(self, event: InboxEvent) -> bool:
        """Store `event` unless its id is stored already; True when this call stored it."""
        return await self.group.submit(event.event_id, event)

    async def drain(self) -> None:
        await self.group.drain()

    async def _one(self, event: InboxEvent) -> bool:
        async with self._pool.connection() as conn:
            return await insert(conn, event)

    async def _many(self, batch: list[InboxEvent]) -> list[bool]:
        async with self._pool.connection() as conn:
            return await insert_many(conn, batch)


_CLAIM_SQL: Final = (
    "SELECT event_id, event_type, body, violet_order_id, bag_id, merchant_id, received_at, "
    "state, attempts FROM webhook_inbox WHERE state = 'pending' "
    "ORDER BY received_at, event_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
)


async def claim_pending(conn: AsyncConnection[Any], limit: int = 100) -> list[InboxRow]:
    """Lock up to `limit` pending events, oldest first, skipping those another worker holds.

    Call inside a transaction (`async with conn.transaction():`) and settle the events in it:
    the locks last until it ends.
    """
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_CLAIM_SQL, {"limit": limit})
        return [InboxRow(**row) for row in await cursor.fetchall()]


_SETTLE_SQL: Final = (
    "UPDATE webhook_inbox SET state = %(state)s, applied_at = now(), reason = %(reason)s, "
    "attempts = attempts + 1 "
    "WHERE event_id = ANY(%(ids)s) AND state IN ('pending', 'failed')"
)


async def settle(
    conn: AsyncConnection[Any], event_ids: Sequence[str], state: str, reason: str | None = None
) -> int:
    """Record how events ended (`applied`, `ignored` or `failed`, with a short reason); returns
    how many were still open. A settled event stays as it is (the database refuses a change)."""
    if state not in SETTLED:
        raise ValueError(f"not a settled state: {state!r}")
    safe_reason = None if reason is None else sensitive.redact_text(reason)[:500]
    cursor = await conn.execute(
        _SETTLE_SQL, {"state": state, "reason": safe_reason, "ids": list(event_ids)}
    )
    return cursor.rowcount


async def retry_failed(conn: AsyncConnection[Any], event_ids: Sequence[str]) -> int:
    """Put failed events back in the queue (an operator's decision, or the applier's policy)."""
    cursor = await conn.execute(
        "UPDATE webhook_inbox SET state = 'pending' WHERE event_id = ANY(%(ids)s) "
        "AND state = 'failed'",
        {"ids": list(event_ids)},
    )
    return cursor.rowcount


_NOTE_ATTEMPT_SQL: Final = (
    "UPDATE webhook_inbox SET attempts = attempts + 1, reason = %(reason)s "
    "WHERE event_id = %(id)s AND state = 'pending' RETURNING attempts"
)


async def note_attempt(conn: AsyncConnection[Any], event_id: str, reason: str) -> int:
    """Count an attempt that left the event pending (its checkout busy, an error to retry), with
    why; returns the attempts so far (0: the event is no longer pending)."""
    safe_reason = sensitive.redact_text(reason)[:500]
    cursor = await conn.execute(_NOTE_ATTEMPT_SQL, {"id": event_id, "reason": safe_reason})
    found = await cursor.fetchone()
    return int(found[0]) if found is not None else 0
