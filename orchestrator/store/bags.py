"""Recording what Violet says about an order's bags, under the checkout's lease, in one transaction.

Webhooks, read-backs and `verify` all end here: `record` takes the checkout's lease the way a
claim does (only when free; a finished checkout's expired lease too), so it never races the
checkout path or a cancel being sent, and it never waits for a row lock (NOWAIT: a held row is
`busy`, the caller retries later). Inside that one transaction it keeps each bag's row in
`checkout_bags` only moving forward (`bag_states.supersedes`: old news never moves a bag back),
records Violet's order status, appends the audit events and the host's changes, and settles a
sent cancel or refund that the news proves done (`action_records.proves_done`: a refund only
when the news accounts for its amount). News of another order than the checkout's own is
refused, nothing written. A kill at any point rolls all of it back.

The news is read from Violet's Order as JSON (a webhook's body, a read-back's answer), so every
source goes through the same reading (store/bag_news.py). The reads of what is recorded and the
after-life pool are store/bag_reads.py's, importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.errors import LockNotAvailable
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from orchestrator import states
from orchestrator.store import changes
from orchestrator.store.action_records import proves_done
from orchestrator.store.bag_news import BagNews, OrderNews, is_newer, news_from_order
from orchestrator.store.bag_reads import (
    bag_rows,
    checkout_of_order,
    pool,
    stale_orders,
    statuses,
)

#: The source of news read from Violet rather than pushed by a webhook.
READ_BACK: Final = "read_back"
#: Audit kinds written here.
WEBHOOK_APPLIED: Final = "webhook_applied"
BAG_READ_BACK: Final = "bag_read_back"
BAG_ACTION_SETTLED: Final = "bag_action_settled"
#: The crash point between taking the lease and the bag writes (kill -9 tests).
CRASH_AFTER_LEASE: Final = "webhook_apply_after_lease"

# The lease is held only inside this transaction; the expiry is a bound should it outlive it.
_LEASE_SECONDS: Final = 30.0


@dataclass(slots=True)
class Recorded:
    """What `record` did: `busy` or `refused` (nothing written), or the moves it wrote."""

    checkout_id: UUID
    app_order_id: str | None = None
    state: str | None = None
    busy: str | None = None
    #: Why the news can never be recorded for this checkout (it is of another order).
    refused: str | None = None
    moved: list[dict[str, Any]] = field(default_factory=list)
    settled_actions: list[str] = field(default_factory=list)
    violet_status: tuple[str | None, str | None] | None = None
    made_due: bool = False


# -- writing --------------------------------------------------------------------------------------

_LOCK_SQL: Final = (
    "SELECT id, app_order_id, violet_order_id, state, pending_step, in_flight, lease_owner, "
    "lease_expires_at, "
    "lease_expires_at < now() AS lease_expired, event_seq, violet_status, next_attempt_at, "
    "next_attempt_at > now() AS later "
    "FROM checkouts WHERE id = %(id)s FOR UPDATE NOWAIT"
)
_TAKE_SQL: Final = (
    "UPDATE checkouts SET lease_owner = %(worker)s, "
    "lease_expires_at = now() + %(lease_s)s * interval '1 second', "
    "lease_epoch = lease_epoch + 1, version = version + 1 WHERE id = %(id)s"
)
_RELEASE_SQL: Final = (
    "UPDATE checkouts SET lease_owner = NULL, lease_expires_at = NULL, version = version + 1, "
    "event_seq = %(event_seq)s, violet_status = %(violet_status)s, updated_at = now() "
    "WHERE id = %(id)s AND lease_owner = %(worker)s"
)
# Only an unfinished row's due time may change (a finished row keeps it, 0009).
_DUE_NOW_SQL: Final = "UPDATE checkouts SET next_attempt_at = now() WHERE id = %(id)s"
_BAGS_SQL: Final = (
    "SELECT bag_id, status, status_at, fulfillment_status, refunded_amount, canceled_amount "
    "FROM checkout_bags WHERE checkout_id = %(id)s"
)
_UPSERT_BAG_SQL: Final = """
INSERT INTO checkout_bags (checkout_id, bag_id, merchant_id, status, status_at, financial_status,
    fulfillment_status, currency, refunded_amount, canceled_amount, last_event_id)
VALUES (%(checkout_id)s, %(bag_id)s, %(merchant_id)s, %(status)s, %(status_at)s,
    %(financial_status)s, %(fulfillment_status)s, %(currency)s, %(refunded_amount)s,
    %(canceled_amount)s, %(last_event_id)s)
ON CONFLICT (checkout_id, bag_id) DO UPDATE SET
    merchant_id = COALESCE(EXCLUDED.merchant_id, checkout_bags.merchant_id),
    status = EXCLUDED.status, status_at = EXCLUDED.status_at,
    financial_status = EXCLUDED.financial_status,
    fulfillment_status = EXCLUDED.fulfillment_status,
    currency = COALESCE(EXCLUDED.currency, checkout_bags.currency),
    refunded_amount = EXCLUDED.refunded_amount, canceled_amount = EXCLUDED.canceled_amount,
    last_event_id = EXCLUDED.last_event_id, updated_at = now()
"""
_TOUCH_BAGS_SQL: Final = (
    "UPDATE checkout_bags SET updated_at = now() "
    "WHERE checkout_id = %(id)s AND bag_id = ANY(%(bag_ids)s)"
)
_SENT_ACTIONS_SQL: Final = (
    "SELECT id, bag_id, kind, actor, answer FROM bag_actions "
    "WHERE checkout_id = %(id)s AND state = 'sent' ORDER BY requested_at FOR UPDATE"
)
_SETTLE_ACTION_SQL: Final = (
    "UPDATE bag_actions SET state = 'succeeded', settled_at = now(), "
    "answer = COALESCE(answer, '{}'::jsonb) || %(evidence)s "
    "WHERE id = %(action_id)s AND state = 'sent'"
)
_EVENT_SQL: Final = (
    "INSERT INTO checkout_events (checkout_id, seq, kind, from_state, to_state, worker, detail) "
    "VALUES (%(id)s, %(seq)s, %(kind)s, %(state)s, %(state)s, %(worker)s, %(detail)s)"
)


class _Trail:
    """The audit events of one transaction, numbered after the row's `event_seq`."""

    def __init__(self, conn: AsyncConnection[Any], row: Mapping[str, Any], worker: str) -> None:
        self.conn, self.row, self.worker = conn, row, worker
        self.seq: int = row["event_seq"]

    async def add(self, kind: str, detail: dict[str, Any]) -> None:
        self.seq += 1
        params = {
            "id": self.row["id"],
            "seq": self.seq,
            "kind": kind,
            "state": self.row["state"],
            "worker": self.worker,
            "detail": Jsonb(changes.storable(detail)),
        }
        await self.conn.execute(_EVENT_SQL, params)


async def _lock_free_checkout(
    conn: AsyncConnection[Any], checkout_id: UUID
) -> tuple[dict[str, Any] | None, str | None]:
    """Lock the checkout row if nobody holds it, inside the caller's transaction: (row, None),
    (row, why busy), or (None, None) when there is no such checkout. Never waits: a row lock held
    right now is busy too (the savepoint keeps the caller's transaction usable)."""
    try:
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_LOCK_SQL, {"id": checkout_id})
            row = await cur.fetchone()
    except LockNotAvailable:
        return None, "the checkout row is being written"
    if row is None:
        return None, None
    if row["lease_owner"] is None:
        return row, None
    # A finished row's expired lease is an interrupted after-life job's: taken like a claim.
    # An unfinished one's is left to recovery, which counts takeovers (poison).
    if row["state"] in states.TERMINAL_STATES and row["lease_expired"]:
        return row, None
    return row, f"leased by {row['lease_owner']} until {row['lease_expires_at']:%H:%M:%S}"


async def record(
    conn: AsyncConnection[Any],
    checkout_id: UUID,
    news: OrderNews,
    *,
    source: str,
    worker: str,
    event_type: str | None = None,
    via: str | None = None,
    crash: Callable[[str], None] | None = None,
) -> Recorded:
    """Record `news` for one checkout under its lease, in one transaction (a savepoint of the
    caller's when it has one open), or report it busy, or refused when it is not news of the
    checkout's own Violet order (`news.order_id`), and write nothing.

    `source` is the webhook's event id, or READ_BACK (`via` names the reader: the read-back job,
    verify). A webhook is always audited (`webhook_applied`, even when it was old news); a
    read-back only when it changed something, but it marks its bags heard from (`updated_at`).
    An unfinished checkout whose submit is in flight and whose order the news shows submitted
    is made due now, so recovery reconciles it at once (the engine settles it; nothing else
    here touches the checkout path's columns).
    """
    async with conn.transaction():
        row, busy = await _lock_free_checkout(conn, checkout_id)
        if row is None and busy is None:
            raise LookupError(f"no checkout {checkout_id}")
        result = Recorded(checkout_id)
        if row is not None:
            result.app_order_id, result.state = row["app_order_id"], row["state"]
            if news.order_id is None or news.order_id != row["violet_order_id"]:
                result.refused = (
                    f"the news is of order {news.order_id}, not of this checkout's order "
                    f"{row['violet_order_id']}"
                )
                return result
        if busy is not None or row is None:
            result.busy = busy
            return result
        params = {"id": checkout_id, "worker": worker, "lease_s": _LEASE_SECONDS}
        await conn.execute(_TAKE_SQL, params)
        if crash is not None:
            crash(CRASH_AFTER_LEASE)
        trail = _Trail(conn, row, worker)
        heard = await _write_bags(conn, row, news, source, result)
        violet_status = row["violet_status"]
        if heard is not None and news.violet_status not in (None, violet_status):
            violet_status = news.violet_status
            result.violet_status = (row["violet_status"], violet_status)
        if _submit_in_flight(row) and news.submitted:
            if row["later"] is not False:
                await conn.execute(_DUE_NOW_SQL, {"id": checkout_id})
            result.made_due = True
        await _audit(trail, news, source, event_type, via, result)
        await _settle_actions(conn, trail, news, source, result)
        if source == READ_BACK and heard:
            await conn.execute(_TOUCH_BAGS_SQL, {"id": checkout_id, "bag_ids": heard})
        await conn.execute(
            _RELEASE_SQL, {**params, "event_seq": trail.seq, "violet_status": violet_status}
        )
    return result


def _submit_in_flight(row: Mapping[str, Any]) -> bool:
    return (
        row["state"] not in states.TERMINAL_STATES
        and row["pending_step"] == states.SUBMIT
        and bool(row["in_flight"])
    )


async def _write_bags(
    conn: AsyncConnection[Any],
    row: Mapping[str, Any],
    news: OrderNews,
    source: str,
    result: Recorded,
) -> list[int] | None:
    """Upsert the bags the news moves forward (a `bag_status` change for each whose status
    moved); returns the ids of the bags the news speaks of, or None when the news is older than
    the newest held (the order status is then not taken)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_BAGS_SQL, {"id": row["id"]})
        held = {bag["bag_id"]: bag for bag in await cur.fetchall()}
    newest = max((bag["status_at"] for bag in held.values()), default=None)
    for bag in news.bags:
        current = held.get(bag.bag_id)
        if current is not None and not is_newer(current, bag):
            continue
        await conn.execute(_UPSERT_BAG_SQL, _bag_params(row["id"], bag, source))
        before = None if current is None else current["status"]
        if before != bag.status:
            await changes.append(
                conn,
                row["id"],
                row["app_order_id"],
                changes.BAG_STATUS,
                {
                    "bag_id": bag.bag_id,
                    "from": before,
                    "to": bag.status,
                    "source": source,
                    "at": news.at.isoformat(),
                },
            )
        result.moved.append(_move(bag, current))
    if newest is not None and news.at < newest:
        return None
    return [bag.bag_id for bag in news.bags]


def _bag_params(checkout_id: UUID, bag: BagNews, source: str) -> dict[str, Any]:
    """The upsert of one bag's row from its news (`source`: the event id, or READ_BACK)."""
    return {
        "checkout_id": checkout_id,
        "bag_id": bag.bag_id,
        "merchant_id": bag.merchant_id,
        "status": bag.status,
        "status_at": bag.at,
        "financial_status": bag.financial_status,
        "fulfillment_status": bag.fulfillment_status,
        "currency": bag.currency,
        "refunded_amount": bag.refunded_amount,
        "canceled_amount": bag.canceled_amount,
        "last_event_id": source,
    }


def _move(bag: BagNews, current: Mapping[str, Any] | None) -> dict[str, Any]:
    """One bag's move as `Recorded.moved` lists it."""
    return {
        "bag_id": bag.bag_id,
        "from": None if current is None else current["status"],
        "to": bag.status,
        "fulfillment_status": bag.fulfillment_status,
        "refunded_amount": bag.refunded_amount,
        "canceled_amount": bag.canceled_amount,
    }


async def _settle_actions(
    conn: AsyncConnection[Any], trail: _Trail, news: OrderNews, source: str, result: Recorded
) -> None:
    """Settle each sent cancel or refund of a bag in the news that the news proves done
    (`proves_done`): canceled, or its amount refunded beyond what was refunded before it. News
    that proves nothing about an action (an earlier refund's, old news) leaves it sent."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_SENT_ACTIONS_SQL, {"id": trail.row["id"]})
        sent = await cur.fetchall()
    shown = {bag.bag_id: bag for bag in news.bags}
    for action in sent:
        bag = shown.get(action["bag_id"])
        before = (action["answer"] or {}).get("before")
        if bag is None or not proves_done(action["kind"], bag.status, bag.refunded_amount, before):
            continue
        evidence = {
            "settled_by": source,
            "bag_status": bag.status,
            "refunded": bag.refunded_amount,
            "at": news.at.isoformat(),
        }
        await conn.execute(
            _SETTLE_ACTION_SQL,
            {"action_id": action["id"], "evidence": Jsonb(changes.storable(evidence))},
        )
        detail = {
            "action_id": str(action["id"]),
            "kind": action["kind"],
            "bag_id": bag.bag_id,
            "state": "succeeded",
            "actor": action["actor"],
            "evidence": source,
        }
        await trail.add(BAG_ACTION_SETTLED, detail)
        await changes.append(
            conn, trail.row["id"], trail.row["app_order_id"], changes.ACTION_SETTLED, detail
        )
        result.settled_actions.append(str(action["id"]))


async def _audit(
    trail: _Trail,
    news: OrderNews,
    source: str,
    event_type: str | None,
    via: str | None,
    result: Recorded,
) -> None:
    """The checkout's audit event for this news."""
    changed = bool(result.moved) or result.violet_status is not None or result.made_due
    detail: dict[str, Any] = {
        "order_id": news.order_id,
        "news_at": news.at.isoformat(),
        "bags": result.moved,
    }
    if result.violet_status is not None:
        detail["violet_status"] = {"from": result.violet_status[0], "to": result.violet_status[1]}
    if result.made_due:
        detail["submit_evidence"] = "the order is submitted at Violet: due for reconcile now"
    if source != READ_BACK:
        detail.update(event_id=source, event_type=event_type, changed=changed)
        await trail.add(WEBHOOK_APPLIED, detail)
    elif changed:
        detail["via"] = via
        await trail.add(BAG_READ_BACK, detail)


async def record_read(
    pool: AsyncConnectionPool, worker: str, checkout_id: UUID, order: Any, *, via: str
) -> Recorded:
    """Record an Order read from Violet (its JSON) for one checkout: source READ_BACK, the time
    of the news its `date_last_modified` (now when it has none)."""
    news = news_from_order(order, fallback_at=datetime.now(UTC))
    async with pool.connection() as conn:
        return await record(conn, checkout_id, news, source=READ_BACK, worker=worker, via=via)


__all__ = [
    "BAG_READ_BACK",
    "CRASH_AFTER_LEASE",
    "READ_BACK",
    "WEBHOOK_APPLIED",
    "BagNews",
    "OrderNews",
    "Recorded",
    "bag_rows",
    "checkout_of_order",
    "news_from_order",
    "pool",
    "record",
    "record_read",
    "stale_orders",
    "statuses",
]
