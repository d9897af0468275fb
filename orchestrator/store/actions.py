"""The SQL of bag actions (a bag's cancel or refund after submit): lease, intent, record, reads.

Each function is one transaction on the orchestrator's SQLAlchemy engine. The lease taken here
is the checkout's own lease (the one the checkout path, the webhook applier and the read-backs
take), claimed on a finished row the way migration 0009 allows: only the lease columns, the
audit sequence and `updated_at` change. Every write after the claim is fenced by `lease_epoch`
and owner, so a worker that lost its lease (paused past it) can never record over the one that
took over. An action's row moves `requested -> sent -> succeeded | failed` (or `requested ->
failed`); the database enforces the moves, freezes settled rows and refuses a second open action
for a bag (migration 0009), whoever writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from psycopg.errors import LockNotAvailable, UniqueViolation
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator.clock import local_clock
from orchestrator.errors import CheckoutBusy, IllegalTransition, LeaseLost
from orchestrator.store import changes
from orchestrator.store.records import Event

REQUESTED: Final = "requested"
SENT: Final = "sent"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
OPEN_STATES: Final = frozenset({REQUESTED, SENT})

_ACTION_COLUMNS: Final = (
    "id, checkout_id, bag_id, kind, state, amount, skus, reason, actor, requested_at, sent_at,"
    " send_by, settled_at, answer, error"
)


@dataclass(frozen=True, slots=True)
class BagAction:
    """A cancel or refund of one bag, as a caller sees it.

    `state`: `requested` (written, not known to have left), `sent` (it left; Violet answered
    202 or did not answer, and says whether it worked only later), `succeeded` (the bag was
    seen canceled or refunded), `failed` (`error` says why; nothing more will be sent).
    """

    id: uuid.UUID
    checkout_id: uuid.UUID
    bag_id: int
    kind: str
    state: str
    amount: int | None
    skus: list[dict[str, Any]] | None
    reason: str | None
    actor: str
    requested_at: datetime
    sent_at: datetime | None
    send_by: datetime | None
    settled_at: datetime | None
    answer: dict[str, Any] | None
    error: dict[str, Any] | None

    @classmethod
    def from_mapping(cls, row: Any) -> BagAction:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "checkout_id": str(self.checkout_id),
            "bag_id": self.bag_id,
            "kind": self.kind,
            "state": self.state,
            "amount": self.amount,
            "skus": self.skus,
            "reason": self.reason,
            "actor": self.actor,
            "requested_at": iso(self.requested_at),
            "sent_at": iso(self.sent_at),
            "send_by": iso(self.send_by),
            "settled_at": iso(self.settled_at),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Lease:
    """A checkout's lease as this worker holds it: the fencing token and its local expiry."""

    checkout_id: uuid.UUID
    app_order_id: str
    worker: str
    epoch: int
    #: Until then the lease is surely ours, on `orchestrator.clock.local_clock`.
    local_until: float
    #: The previous owner whose expired lease was taken over (None: it was free).
    taken_over_from: str | None


@dataclass(frozen=True, slots=True)
class BagNews:
    """What `checkout_bags` holds of a bag (webhooks and read-backs keep it)."""

    status: str
    refunded_amount: int


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a Z, like every JSON document the orchestrator prints."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


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
RETURNING {_ACTION_COLUMNS}
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
RETURNING {_ACTION_COLUMNS}
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


# -- reads --------------------------------------------------------------------------------------


async def actions_of(engine: AsyncEngine, checkout_id: uuid.UUID) -> list[BagAction]:
    """A checkout's actions, oldest first."""
    sql = (
        f"SELECT {_ACTION_COLUMNS} FROM bag_actions WHERE checkout_id = %(id)s "
        "ORDER BY requested_at, id"
    )
    async with engine.connect() as conn:
        rows = (await conn.exec_driver_sql(sql, {"id": checkout_id})).mappings().all()
    return [BagAction.from_mapping(r) for r in rows]


async def bag_news(engine: AsyncEngine, checkout_id: uuid.UUID, bag_id: int) -> BagNews | None:
    """What `checkout_bags` holds of the bag (None: no news of it yet)."""
    sql = (
        "SELECT status, refunded_amount FROM checkout_bags "
        "WHERE checkout_id = %(id)s AND bag_id = %(bag_id)s"
    )
    async with engine.connect() as conn:
        found = (
            (await conn.exec_driver_sql(sql, {"id": checkout_id, "bag_id": bag_id}))
            .mappings()
            .first()
        )
    if found is None:
        return None
    return BagNews(status=found["status"], refunded_amount=int(found["refunded_amount"]))


_UNSETTLED_SQL = f"""
SELECT {", ".join("a." + c.strip() for c in _ACTION_COLUMNS.split(","))},
       c.violet_order_id, c.app_order_id
FROM bag_actions a JOIN checkouts c ON c.id = a.checkout_id
WHERE a.state IN ('{REQUESTED}', '{SENT}')
  AND (c.lease_owner IS NULL OR c.lease_expires_at < now())
  AND CASE a.state
      WHEN '{SENT}' THEN COALESCE(a.sent_at, a.requested_at)
      ELSE COALESCE(a.send_by, a.requested_at) END
      < now() - %(settle_s)s * interval '1 second'
ORDER BY a.requested_at
LIMIT %(limit)s
"""


@dataclass(frozen=True, slots=True)
class Unsettled:
    """An open action left without its outcome, with what a read of Violet needs."""

    action: BagAction
    violet_order_id: int | None
    app_order_id: str


async def unsettled(engine: AsyncEngine, *, settle_seconds: float, limit: int) -> list[Unsettled]:
    """Open actions nobody is working on (the checkout's lease is free or expired) whose request,
    if it left at all, left over `settle_seconds` ago: `sent` ones by `sent_at`, `requested` ones
    (their process stopped before it recorded an answer) by `send_by`, the last instant their
    request could leave."""
    params = {"settle_s": settle_seconds, "limit": limit}
    async with engine.connect() as conn:
        rows = (await conn.exec_driver_sql(_UNSETTLED_SQL, params)).mappings().all()
    return [
        Unsettled(BagAction.from_mapping(r), r["violet_order_id"], r["app_order_id"]) for r in rows
    ]


async def db_now(engine: AsyncEngine) -> datetime:
    """The database's clock (every bound here is on it)."""
    async with engine.connect() as conn:
        value: datetime = (await conn.exec_driver_sql("SELECT now()")).scalar_one()
    return value
