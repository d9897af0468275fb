"""The SQL that writes bag actions (a bag's cancel or refund after submit): lease, intent, record.

Each function is one transaction on the orchestrator's SQLAlchemy engine. The lease taken here
is the checkout's own lease (the one the checkout path, the webhook applier and the read-backs
take), claimed on a finished row the way migration 0009 allows: only the lease columns, the
audit sequence and `updated_at` change. Every write after the claim is fenced by `lease_epoch`
and owner, so a worker that lost its lease (paused past it) can never record over the one that
took over. An action's row moves `requested -> sent -> succeeded | failed` (or `requested ->
failed`); the database enforces the moves, freezes settled rows and refuses a second open action
for a bag (migration 0009), whoever writes. The records are store/action_records.py's and the
reads store/action_reads.py's, all importable from here too.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg.errors import LockNotAvailable, UniqueViolation
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import observe
from orchestrator.clock import local_clock
from orchestrator.errors import CheckoutBusy, IllegalTransition, LeaseLost
from orchestrator.store import bags, changes
from orchestrator.store.action_reads import actions_of, bag_news, db_now, unsettled
from orchestrator.store.action_records import (
    ACTION_COLUMNS,
    FAILED,
    OPEN_STATES,
    REQUESTED,
    SENT,
    SUCCEEDED,
    BagAction,
    BagNews,
    Lease,
    Unsettled,
    iso,
)
from orchestrator.store.records import Event

__all__ = [
    "FAILED",
    "OPEN_STATES",
    "REQUESTED",
    "SENT",
    "SUCCEEDED",
    "BagAction",
    "BagNews",
    "Intent",
    "Lease",
    "Move",
    "Unsettled",
    "actions_of",
    "bag_news",
    "claim",
    "db_now",
    "iso",
    "record",
    "record_order_read",
    "release",
    "unsettled",
    "write_intent",
]


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()


def _cause(exc: BaseException) -> BaseException:
    """The driver's exception under SQLAlchemy's wrapper (or the exception itself)."""
    return getattr(exc, "orig", None) or exc


# -- the lease ----------------------------------------------------------------------------------

_CLAIM_SQL = """
WITH cur AS (
    SELECT id, lease_owner AS prev_owner FROM checkouts
    WHERE id = %(id)s AND (lease_owner IS NULL OR lease_expires_at < now())
    FOR UPDATE NOWAIT
)
UPDATE checkouts c SET
    lease_owner = %(worker)s,
    lease_expires_at = now() + %(lease_s)s * interval '1 second',
    lease_epoch = c.lease_epoch + 1,
    version = c.version + 1,
    updated_at = now()
FROM cur WHERE c.id = cur.id
RETURNING c.lease_epoch, c.app_order_id, cur.prev_owner
"""

_HOLDER_SQL = "SELECT lease_owner, lease_expires_at FROM checkouts WHERE id = %(id)s"


async def claim(
    engine: AsyncEngine, checkout_id: uuid.UUID, *, worker: str, lease_seconds: float
) -> Lease:
    """Take the checkout's lease if it is free or expired; CheckoutBusy if it is held (never
    waits on the row: NOWAIT), so a cancel or refund never races the checkout path."""
    params = {"id": checkout_id, "worker": worker, "lease_s": lease_seconds}
    sent_at = local_clock()
    try:
        async with engine.begin() as conn:
            found = (await conn.exec_driver_sql(_CLAIM_SQL, params)).mappings().first()
            holder = None
            if found is None:
                holder = (await conn.exec_driver_sql(_HOLDER_SQL, params)).mappings().first()
    except Exception as exc:
        if isinstance(_cause(exc), LockNotAvailable):
            raise CheckoutBusy(
                f"checkout {checkout_id} is being written by another worker"
            ) from None
        raise
    if found is None:
        owner = holder["lease_owner"] if holder is not None else None
        until = holder["lease_expires_at"] if holder is not None else None
        raise CheckoutBusy(f"checkout {checkout_id} is leased by {owner} until {iso(until)}")
    if found["prev_owner"] is not None:
        observe.takeover("bag_action")
    return Lease(
        checkout_id=checkout_id,
        app_order_id=found["app_order_id"],
        worker=worker,
        epoch=found["lease_epoch"],
        local_until=sent_at + lease_seconds,
        taken_over_from=found["prev_owner"],
    )


# A fenced touch of the row that also reserves `n` audit sequence numbers (and, with `release`,
# gives the lease back): refused (no row) when the lease moved on.
_FENCE_SQL = """
UPDATE checkouts SET
    event_seq = event_seq + %(n)s,
    version = version + 1,
    lease_owner = CASE WHEN %(release)s THEN NULL ELSE lease_owner END,
    lease_expires_at = CASE WHEN %(release)s THEN NULL ELSE lease_expires_at END,
    updated_at = now()
WHERE id = %(id)s AND lease_epoch = %(epoch)s AND lease_owner = %(worker)s
RETURNING event_seq
"""

_EVENT_SQL = """
INSERT INTO checkout_events (
    checkout_id, seq, kind, worker, step, http_method, http_path, http_status, latency_ms,
    request_body, response_body, error_class, error_type, error_message, detail
) VALUES (
    %(checkout_id)s, %(seq)s, %(kind)s, %(worker)s, %(step)s, %(http_method)s, %(http_path)s,
    %(http_status)s, %(latency_ms)s, %(request_body)s::jsonb, %(response_body)s::jsonb,
    %(error_class)s, %(error_type)s, %(error_message)s, %(detail)s::jsonb
)
"""


async def _fence(
    conn: AsyncConnection, lease: Lease, events: Sequence[Event], *, release: bool
) -> None:
    """Fence this transaction on the lease and append `events` to the checkout's audit trail."""
    params = {
        "id": lease.checkout_id,
        "epoch": lease.epoch,
        "worker": lease.worker,
        "n": len(events),
        "release": release,
    }
    last = (await conn.exec_driver_sql(_FENCE_SQL, params)).scalar()
    if last is None:
        raise LeaseLost(
            f"checkout {lease.checkout_id}: lease lost (epoch {lease.epoch} moved on); "
            "nothing recorded"
        )
    first = int(last) - len(events) + 1
    for offset, event in enumerate(events):
        await conn.exec_driver_sql(
            _EVENT_SQL,
            {
                "checkout_id": lease.checkout_id,
                "seq": first + offset,
                "kind": event.kind,
                "worker": lease.worker,
                "step": event.step,
                "http_method": event.http_method,
                "http_path": event.http_path,
                "http_status": event.http_status,
                "latency_ms": event.latency_ms,
                "request_body": _json(event.request_body),
                "response_body": _json(event.response_body),
                "error_class": event.error_class,
                "error_type": event.error_type,
                "error_message": event.error_message,
                "detail": _json(event.detail),
            },
        )


async def release(engine: AsyncEngine, lease: Lease, events: Sequence[Event] = ()) -> None:
    """Give the lease back (with `events`); a lease already gone is left alone."""
    try:
        async with engine.begin() as conn:
            await _fence(conn, lease, events, release=True)
    except LeaseLost:
        return


# -- the action's row ---------------------------------------------------------------------------

_INSERT_SQL = f"""
INSERT INTO bag_actions (
    id, checkout_id, bag_id, kind, amount, skus, reason, actor, send_by, answer
) VALUES (
    %(id)s, %(checkout_id)s, %(bag_id)s, %(kind)s, %(amount)s, %(skus)s::jsonb, %(reason)s,
    %(actor)s, now() + %(send_s)s * interval '1 second', %(answer)s::jsonb
)
RETURNING {ACTION_COLUMNS}
"""


@dataclass(frozen=True, slots=True)
class Intent:
    """What a caller asked for, as it is written before anything is sent."""

    id: uuid.UUID
    bag_id: int
    kind: str
    actor: str
    amount: int | None = None
    skus: list[dict[str, Any]] | None = None
    reason: str | None = None
    #: What the bag looked like before (its refunded amount): a read later compares with it.
    before: dict[str, Any] | None = None


async def write_intent(
    engine: AsyncEngine,
    lease: Lease,
    intent: Intent,
    *,
    send_seconds: float,
    events: Sequence[Event],
) -> BagAction:
    """The durable intent: the `requested` row (its `send_by` on the database's clock) and its
    audit events, in one transaction under the lease. A second open action for the bag is
    refused by the database's unique index: IllegalTransition, nothing written."""
    params = {
        "id": intent.id,
        "checkout_id": lease.checkout_id,
        "bag_id": intent.bag_id,
        "kind": intent.kind,
        "amount": intent.amount,
        "skus": _json(intent.skus),
        "reason": intent.reason,
        "actor": intent.actor,
        "send_s": send_seconds,
        "answer": _json({"before": intent.before} if intent.before is not None else None),
    }
    try:
        async with engine.begin() as conn:
            await _fence(conn, lease, events, release=False)
            row = (await conn.exec_driver_sql(_INSERT_SQL, params)).mappings().one()
    except Exception as exc:
        if isinstance(_cause(exc), UniqueViolation):
            raise IllegalTransition(
                f"bag {intent.bag_id} already has a cancel or refund in progress; "
                "wait for it to settle (orchestrator bag-actions) and ask again"
            ) from None
        raise
    return BagAction.from_mapping(row)


_MOVE_SQL = f"""
UPDATE bag_actions SET
    state = %(state)s,
    sent_at = CASE WHEN %(sent)s THEN COALESCE(sent_at, now()) ELSE sent_at END,
    settled_at = CASE WHEN %(state)s IN ('{SUCCEEDED}', '{FAILED}') THEN now() END,
    answer = COALESCE(answer, '{{}}'::jsonb) || COALESCE(%(answer)s::jsonb, '{{}}'::jsonb),
    error = COALESCE(%(error)s::jsonb, error)
WHERE id = %(id)s AND state = %(from_state)s
RETURNING {ACTION_COLUMNS}
"""


@dataclass(frozen=True, slots=True)
class Move:
    """One move of an action's row: to `state`, with what Violet answered or why it failed."""

    state: str
    #: The request left (`sent_at` is set if it was not).
    sent: bool = False
    answer: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


async def record(
    engine: AsyncEngine,
    lease: Lease,
    action: BagAction,
    moves: Sequence[Move],
    events: Sequence[Event],
    *,
    release: bool,
) -> BagAction:
    """Apply `moves` to the action (each a legal move from the state before it), its audit
    events, the `action_settled` change when it settles, and (with `release`) the lease's
    release: one transaction, fenced by the lease."""
    current = action
    async with engine.begin() as conn:
        await _fence(conn, lease, events, release=release)
        for move in moves:
            params = {
                "id": current.id,
                "from_state": current.state,
                "state": move.state,
                "sent": move.sent,
                "answer": _json(move.answer),
                "error": _json(move.error),
            }
            found = (await conn.exec_driver_sql(_MOVE_SQL, params)).mappings().first()
            if found is None:
                raise LeaseLost(f"bag action {current.id} moved on meanwhile; nothing recorded")
            current = BagAction.from_mapping(found)
        if not current.is_open and action.is_open:
            detail = {
                "action_id": str(current.id),
                "bag_id": current.bag_id,
                "kind": current.kind,
                "state": current.state,
                "amount": current.amount,
                "actor": current.actor,
                "error": current.error,
            }
            await conn.exec_driver_sql(
                changes.APPEND_SQL,
                changes.append_params(
                    lease.checkout_id, lease.app_order_id, changes.ACTION_SETTLED, detail
                ),
            )
    return current


async def record_order_read(
    engine: AsyncEngine, checkout_id: uuid.UUID, order: Any, *, worker: str, via: str
) -> bags.Recorded:
    """Record an Order read from Violet (its JSON) as news of the checkout's bags, exactly as a
    read-back does (store/bags.py `record`, under the lease, which must be free), on a
    connection of the engine's pool."""
    news = bags.news_from_order(order, fallback_at=datetime.now(UTC))
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection  # psycopg's AsyncConnection, no transaction open
        return await bags.record(
            driver, checkout_id, news, source=bags.READ_BACK, worker=worker, via=via
        )
