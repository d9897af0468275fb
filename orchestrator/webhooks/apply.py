"""The webhook applier: settles the inbox's pending events, each under its checkout's lease.

A pass claims a small batch of pending events (oldest first, `FOR UPDATE SKIP LOCKED`, so any
number of appliers share the queue) in one transaction and settles each in a savepoint of it:
- an order event of one of our checkouts is recorded by `store.bags.record` (bag rows forward
  only, Violet's order status, audit, changes, a sent cancel or refund settled), then `applied`;
  its checkout busy (the checkout path holds the lease) leaves it pending, retried after a
  backoff that grows with its `attempts`: it never waits on the checkout;
- an order that is not ours, news that is not of its checkout's own order (`record` refuses
  it), or a type nothing acts on, is `ignored` with the reason (in the inbox only);
- MERCHANT_DISABLED parks that merchant's checkouts, MERCHANT_ENABLED wakes them
  (store/merchants.py);
- an event whose handling raises (a bug, not the database) is retried, and after
  `max_attempts` marked `failed` with the reason: kept, never lost (`inbox.retry_failed`).
A worker killed mid-pass rolls the whole pass back: its events are pending again.

An event that shows the order submitted while the checkout's own submit is in flight (its
answer lost) makes the checkout due now; recovery's reconcile reads the cart and settles it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.errors import LockNotAvailable, QueryCanceled
from psycopg_pool import AsyncConnectionPool

from orchestrator.engine.crashpoints import CrashPoints
from orchestrator.errors import OrchestratorError
from orchestrator.store import bags, database, inbox, merchants

log = logging.getLogger(__name__)

MERCHANT_DISABLED: Final = "MERCHANT_DISABLED"
MERCHANT_ENABLED: Final = "MERCHANT_ENABLED"
#: Attempts of an event whose handling raises before it is marked failed.
MAX_ATTEMPTS: Final = 5
#: A busy checkout's event is tried again after base x 2^(attempts-1) seconds, at most cap.
BACKOFF_BASE_S: Final = 0.25
BACKOFF_CAP_S: Final = 30.0


@dataclass(slots=True)
class ApplySummary:
    """What one or more passes did with the events they claimed."""

    applied: int = 0
    ignored: int = 0
    failed: int = 0
    #: Left pending: the checkout was busy, or handling raised and will be tried again.
    retried: int = 0

    @property
    def settled(self) -> int:
        return self.applied + self.ignored + self.failed

    def add(self, other: ApplySummary) -> None:
        for name in ("applied", "ignored", "failed", "retried"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:webhooks"


#: The applier's own small pool (store/bags.py `pool`).
applier_pool = bags.pool


class _Retry(OrchestratorError):
    """Leave the event pending and try it again later (its checkout is busy)."""


class WebhookApplier:
    """Applies pending inbox events (see the module docstring). One per process is enough;
    several share the queue safely."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        worker: str | None = None,
        crash: CrashPoints | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE_S,
        backoff_cap: float = BACKOFF_CAP_S,
    ) -> None:
        self.pool = pool
        self.worker = worker or default_worker_id()
        self.crash = crash if crash is not None else CrashPoints()
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        #: Events left pending, by id: not tried again before this instant (monotonic).
        self._later: dict[str, float] = {}

    def next_retry_in(self) -> float | None:
        """Seconds until the earliest event left pending may be tried again (None: none)."""
        if not self._later:
            return None
        return max(0.0, min(self._later.values()) - time.monotonic())

    async def apply_pending(self, limit: int = 20) -> ApplySummary:
        """One pass: settle up to `limit` pending events that are not waiting out a backoff."""
        summary = ApplySummary()
        now = time.monotonic()
        async with self.pool.connection() as conn, conn.transaction():
            claimed = await inbox.claim_pending(conn, limit=limit + len(self._later))
            due = [e for e in claimed if self._later.get(e.event_id, 0.0) <= now][:limit]
            for event in due:
                await self._apply_one(conn, event, summary)
        pending = {e.event_id for e in claimed}
        self._later = {k: v for k, v in self._later.items() if k in pending}
        return summary

    async def run_until_idle(self, *, batch: int = 20, horizon: float = 5.0) -> ApplySummary:
        """Passes until nothing is pending but events waiting longer than `horizon` seconds."""
        total = ApplySummary()
        while True:
            summary = await self.apply_pending(batch)
            total.add(summary)
            if summary.settled:
                continue
            wait = self.next_retry_in()
            if wait is None or wait > horizon:
                return total
            await _sleep(wait + 0.01)

    async def _apply_one(
        self, conn: AsyncConnection[Any], event: inbox.InboxRow, summary: ApplySummary
    ) -> None:
        try:
            async with conn.transaction():
                state, reason = await self._handle(conn, event)
                await inbox.settle(conn, [event.event_id], state, reason)
        except _Retry as busy:
            await self._retry_later(conn, event, str(busy))
            summary.retried += 1
            return
        except Exception as exc:
            if conn.broken or conn.closed:
                raise  # the connection is gone: the whole pass rolls back, nothing is lost
            if isinstance(exc, LockNotAvailable | QueryCanceled):  # waited too long: busy
                await self._retry_later(conn, event, f"database: {database.error_reason(exc)}")
                summary.retried += 1
                return
            log.exception("webhook event %s: applying it failed", event.event_id)
            reason = f"{type(exc).__name__}: {exc}"
            if event.attempts + 1 >= self.max_attempts:
                await inbox.settle(conn, [event.event_id], inbox.FAILED, reason)
                self._later.pop(event.event_id, None)
                summary.failed += 1
            else:
                await self._retry_later(conn, event, reason)
                summary.retried += 1
            return
        self._later.pop(event.event_id, None)
        if state == inbox.APPLIED:
            summary.applied += 1
        else:
            summary.ignored += 1

    async def _retry_later(
        self, conn: AsyncConnection[Any], event: inbox.InboxRow, reason: str
    ) -> None:
        attempts = await inbox.note_attempt(conn, event.event_id, reason)
        delay = min(self.backoff_cap, self.backoff_base * 2 ** min(max(attempts - 1, 0), 16))
        self._later[event.event_id] = time.monotonic() + delay

    async def _handle(
        self, conn: AsyncConnection[Any], event: inbox.InboxRow
    ) -> tuple[str, str | None]:
        """What the event means; returns how it ends (applied or ignored, with why)."""
        if event.event_type in (MERCHANT_DISABLED, MERCHANT_ENABLED):
            return await self._merchant(conn, event)
        if not event.event_type.startswith("ORDER_"):
            return inbox.IGNORED, f"{event.event_type} is not acted on"
        if event.violet_order_id is None:
            return inbox.IGNORED, "the event names no order"
        checkout_id = await bags.checkout_of_order(conn, event.violet_order_id)
        if checkout_id is None:
            return inbox.IGNORED, f"order {event.violet_order_id} is not one of our checkouts"
        news = bags.news_from_order(event.body, fallback_at=event.received_at)
        done = await bags.record(
            conn,
            checkout_id,
            news,
            source=event.event_id,
            worker=self.worker,
            event_type=event.event_type,
            crash=self.crash.hit,
        )
        if done.refused is not None:
            return inbox.IGNORED, done.refused
        if done.busy is not None:
            raise _Retry(f"checkout busy: {done.busy}")
        return inbox.APPLIED, None

    async def _merchant(
        self, conn: AsyncConnection[Any], event: inbox.InboxRow
    ) -> tuple[str, str | None]:
        if event.merchant_id is None:
            return inbox.IGNORED, "the event names no merchant"
        act = merchants.park if event.event_type == MERCHANT_DISABLED else merchants.resume
        changed = await act(conn, event.merchant_id, event_id=event.event_id, worker=self.worker)
        return inbox.APPLIED, f"{len(changed)} checkout(s) of merchant {event.merchant_id}"


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


__all__ = [
    "MAX_ATTEMPTS",
    "ApplySummary",
    "WebhookApplier",
    "applier_pool",
    "default_worker_id",
]
