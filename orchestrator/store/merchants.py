"""Parking a disabled merchant's checkouts, and waking them when Violet enables it again.

Violet disables a merchant (MERCHANT_DISABLED) when it can no longer take orders; every checkout
with a bag of that merchant would fail its next step one by one. Instead each such checkout that
recovery would drive next (unfinished, a step pending, none in flight, no lease) keeps its state
and is parked: `waiting_reason` says why and `next_attempt_at` is pushed far out. An in-flight
step is left alone (its outcome must still be reconciled) and so is a leased checkout (its
worker is driving it). MERCHANT_ENABLED makes the parked ones due now, reason cleared. Each
change is one statement, fenced like a claim (`lease_epoch` bumped on the rows it changes), with
an audit event and a `checkout_waiting` change per checkout.
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from orchestrator import states
from orchestrator.store import changes

#: How far out a parked checkout's next attempt is pushed (MERCHANT_ENABLED brings it back).
PARK_DAYS: Final = 3650
PARKED: Final = "merchant_parked"
RESUMED: Final = "merchant_resumed"


def park_reason(merchant_id: int) -> str:
    """The `waiting_reason` of a checkout parked for `merchant_id` (also how it is found again)."""
    return f"merchant {merchant_id} disabled by Violet; resumes when Violet enables it"


_PARK_SQL: Final = f"""
WITH hit AS (
    SELECT id FROM checkouts
    WHERE state NOT IN {states.TERMINAL_SQL} AND pending_step IS NOT NULL AND NOT in_flight
      AND lease_owner IS NULL
      AND bags @> jsonb_build_array(jsonb_build_object('merchant_id', %(merchant_id)s::bigint))
      AND waiting_reason IS DISTINCT FROM %(reason)s
    ORDER BY id FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE checkouts c SET waiting_reason = %(reason)s,
        next_attempt_at = now() + %(days)s * interval '1 day',
        lease_epoch = c.lease_epoch + 1, version = c.version + 1,
        event_seq = c.event_seq + 1, updated_at = now()
    FROM hit WHERE c.id = hit.id
    RETURNING c.id, c.app_order_id, c.state, c.event_seq, c.pending_step
)
SELECT * FROM upd
"""

_RESUME_SQL: Final = f"""
WITH hit AS (
    SELECT id FROM checkouts
    WHERE state NOT IN {states.TERMINAL_SQL} AND waiting_reason = %(reason)s
      AND lease_owner IS NULL
    ORDER BY id FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE checkouts c SET waiting_reason = NULL, next_attempt_at = now(),
        lease_epoch = c.lease_epoch + 1, version = c.version + 1,
        event_seq = c.event_seq + 1, updated_at = now()
    FROM hit WHERE c.id = hit.id
    RETURNING c.id, c.app_order_id, c.state, c.event_seq, c.pending_step
)
SELECT * FROM upd
"""

_EVENT_SQL: Final = (
    "INSERT INTO checkout_events (checkout_id, seq, kind, from_state, to_state, step, worker, "
    "detail) VALUES (%(id)s, %(seq)s, %(kind)s, %(state)s, %(state)s, %(step)s, %(worker)s, "
    "%(detail)s)"
)


async def _each(
    conn: AsyncConnection[Any],
    sql: str,
    kind: str,
    merchant_id: int,
    detail: dict[str, Any],
    worker: str,
) -> list[UUID]:
    params = {"merchant_id": merchant_id, "reason": park_reason(merchant_id), "days": PARK_DAYS}
    async with conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            rows = await cur.fetchall()
        for row in rows:
            await conn.execute(
                _EVENT_SQL,
                {
                    "id": row["id"],
                    "seq": row["event_seq"],
                    "kind": kind,
                    "state": row["state"],
                    "step": row["pending_step"],
                    "worker": worker,
                    "detail": Jsonb(changes.storable(detail)),
                },
            )
            if kind == PARKED:
                await changes.append(
                    conn,
                    row["id"],
                    row["app_order_id"],
                    changes.CHECKOUT_WAITING,
                    {"state": row["state"], **detail},
                )
    return [row["id"] for row in rows]


async def park(
    conn: AsyncConnection[Any], merchant_id: int, *, event_id: str, worker: str
) -> list[UUID]:
    """Park the merchant's checkouts that recovery would drive next; returns their ids."""
    detail = {"merchant_id": merchant_id, "event_id": event_id, "reason": park_reason(merchant_id)}
    return await _each(conn, _PARK_SQL, PARKED, merchant_id, detail, worker)


async def resume(
    conn: AsyncConnection[Any], merchant_id: int, *, event_id: str, worker: str
) -> list[UUID]:
    """Make the checkouts parked for the merchant due now; returns their ids."""
    detail = {"merchant_id": merchant_id, "event_id": event_id}
    return await _each(conn, _RESUME_SQL, RESUMED, merchant_id, detail, worker)
