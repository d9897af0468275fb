"""An in-memory store for the engine (`orchestrator.engine.ports.EngineStore`), like
procrastinate's in-memory connector: the step protocol's decisions run in milliseconds.

It keeps what the runner's correctness leans on, as the PostgreSQL repository and its triggers
do (store/repository.py, migrations 0001 and 0005):

- a write is fenced by the lease epoch: a stale one stores nothing, puts `row.event_seq` back
  and raises `LeaseLost`, as `Repository._commit_write` does when its UPDATE matches no row;
- a state change outside `orchestrator.states`' graph is refused (23T01), and so is any write to
  a finished checkout (23T02), as the guard triggers refuse them;
- events are only appended (a seq is stored once: the primary key);
- `now()` comes from an injectable clock, read once per statement, so due times are exact;
- the row is read when `write` is called, not when its coroutine runs (a write behind a call).

What it leaves out: the tripwire for secrets in stored text, group commit, and SQL itself.
Besides the engine's two methods it has `insert`, `claim` and a few reads, with the semantics
of the repository's statements of those names, so tests can set rows up and resume them.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator import states
from orchestrator.clock import local_clock
from orchestrator.errors import CheckoutBusy, CheckoutNotFound, LeaseLost
from orchestrator.store.records import CheckoutRow, Event
from orchestrator.store.repository import Claim
from orchestrator.store.schema import SQLSTATE_APPEND_ONLY, SQLSTATE_ILLEGAL_TRANSITION

__all__ = ["FakeClock", "FakeRepository", "StoreRefused"]

_LEGAL = frozenset((source, dest) for source, dest, _ in states.legal_moves())
_EVENT_FIELDS = tuple(Event.__dataclass_fields__)
#: What a write copies from the caller's row into the stored one.
_WRITTEN = (
    "state",
    "pending_step",
    "in_flight",
    "step_no",
    "attempt",
    "recoveries",
    "event_seq",
    "violet_order_id",
    "sub_total",
    "shipping_total",
    "tax_total",
    "discount_total",
    "total",
    "bags",
    "violet_status",
    "waiting_reason",
    "last_error",
)
_UNIQUE_VIOLATION = "23505"


class StoreRefused(Exception):
    """What a guard trigger or a constraint of the real database would raise (with its SQLSTATE)."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class FakeClock:
    """The database's `now()`: a fixed instant that moves only when a test moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _after(now: datetime, seconds: float | None) -> datetime | None:
    """`now() + seconds * interval '1 second'` (NULL seconds: NULL)."""
    return None if seconds is None else now + timedelta(seconds=seconds)


class FakeRepository:
    """Checkouts and their events, in dictionaries."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock: Callable[[], datetime] = clock or FakeClock()
        self._rows: dict[uuid.UUID, CheckoutRow] = {}
        self._events: dict[uuid.UUID, list[dict[str, Any]]] = {}
        #: Step writes that reached the store (refused ones included), per checkout.
        self.writes: dict[uuid.UUID, int] = {}

    # -- the engine's view (EngineStore) ---------------------------------------------------

    def write(
        self,
        row: CheckoutRow,
        events: Sequence[Event],
        *,
        worker: str,
        lease_seconds: float,
        keep_lease: bool,
        start_step: bool = False,
        send_seconds: float | None = None,
        due_in: float | None = None,
        terminal: bool = False,
    ) -> Coroutine[Any, Any, None]:
        """The row is read now; the returned coroutine commits it (see the module docstring)."""
        seq_before = row.event_seq
        written = {name: copy.deepcopy(getattr(row, name)) for name in _WRITTEN}
        payload = []
        for event in events:
            row.event_seq += 1
            fields = {name: copy.deepcopy(getattr(event, name)) for name in _EVENT_FIELDS}
            payload.append({**fields, "seq": row.event_seq, "worker": worker})
        written["event_seq"] = row.event_seq
        return self._commit(
            row,
            written,
            payload,
            epoch=row.lease_epoch,
            seq_before=seq_before,
            owner=worker if keep_lease else None,
            lease_seconds=lease_seconds,
            start_step=start_step,
            send_seconds=send_seconds,
            due_in=due_in,
            terminal=terminal,
        )

    async def _commit(
        self,
        row: CheckoutRow,
        written: dict[str, Any],
        events: list[dict[str, Any]],
        *,
        epoch: int,
        seq_before: int,
        owner: str | None,
        lease_seconds: float,
        start_step: bool,
        send_seconds: float | None,
        due_in: float | None,
        terminal: bool,
    ) -> None:
        sent_at = local_clock()
        await asyncio.sleep(0)  # a statement is a round trip: other tasks run meanwhile
        self.writes[row.id] = self.writes.get(row.id, 0) + 1
        try:
            stored = self._fenced(row.id, epoch)
            self._check_move(stored, written["state"])
            self._check_events(row.id, events)
        except BaseException:
            row.event_seq = seq_before
            raise
        now = self.clock()
        for name, value in written.items():
            setattr(stored, name, value)
        stored.version += 1
        if start_step:
            stored.step_started_at = now
            stored.step_send_by = _after(now, send_seconds)
        stored.lease_owner = owner
        stored.lease_expires_at = None if owner is None else _after(now, lease_seconds)
        stored.next_attempt_at = (
            stored.lease_expires_at if owner is not None else _after(now, due_in)
        )
        stored.updated_at = now
        stored.finished_at = now if terminal else None
        self._append_events(row.id, events, now)
        for name in (
            "version",
            "next_attempt_at",
            "lease_expires_at",
            "step_started_at",
            "step_send_by",
            "updated_at",
            "finished_at",
            "lease_owner",
        ):
            setattr(row, name, getattr(stored, name))
        if start_step:
            row.local_step_start = sent_at
        row.local_lease_until = sent_at + lease_seconds if owner is not None else None

    def _fenced(self, checkout_id: uuid.UUID, epoch: int) -> CheckoutRow:
        stored = self._rows.get(checkout_id)
        if stored is None or stored.lease_epoch != epoch:
            raise LeaseLost(
                f"checkout {checkout_id}: lease epoch {epoch} was taken over; write refused"
            )
        return stored

    @staticmethod
    def _check_move(stored: CheckoutRow, state: str) -> None:
        if stored.state in states.TERMINAL_STATES:
            raise StoreRefused(
                SQLSTATE_APPEND_ONLY,
                f"checkout {stored.id} is finished ({stored.state}): its row is kept as it is",
            )
        if state != stored.state and (stored.state, state) not in _LEGAL:
            raise StoreRefused(
                SQLSTATE_ILLEGAL_TRANSITION,
                f"illegal checkout transition {stored.state} -> {state}",
            )

    def _check_events(self, checkout_id: uuid.UUID, events: list[dict[str, Any]]) -> None:
        taken = {e["seq"] for e in self._events[checkout_id]}
        seqs = [e["seq"] for e in events]
        if taken.intersection(seqs) or len(set(seqs)) != len(seqs):
            raise StoreRefused(_UNIQUE_VIOLATION, f"checkout {checkout_id}: event seq reused")

    def _append_events(
        self, checkout_id: uuid.UUID, events: list[dict[str, Any]], now: datetime
    ) -> None:
        self._check_events(checkout_id, events)
        self._events[checkout_id].extend(
            {**e, "checkout_id": checkout_id, "at": now} for e in events
        )

    async def renew(
        self, ids: Sequence[uuid.UUID], *, worker: str, lease_seconds: float
    ) -> set[uuid.UUID]:
        await asyncio.sleep(0)
        now = self.clock()
        renewed = set()
        for checkout_id in ids:
            stored = self._rows.get(checkout_id)
            if stored is not None and stored.lease_owner == worker:
                stored.lease_expires_at = _after(now, lease_seconds)
                renewed.add(checkout_id)
        return renewed

    # -- setting rows up and reading them back (the repository's statements of these names) -

    async def insert(
        self,
        row: CheckoutRow,
        events: Sequence[Event],
        *,
        worker: str,
        lease_seconds: float,
        leased: bool,
        send_seconds: float | None = None,
    ) -> CheckoutRow | None:
        """A new checkout and its first events; None if its app_order_id is taken."""
        if row.state != states.INITIAL:
            raise StoreRefused(SQLSTATE_ILLEGAL_TRANSITION, "a checkout starts in state new")
        if any(r.app_order_id == row.app_order_id for r in self._rows.values()):
            return None
        sent_at = local_clock()
        now = self.clock()
        lease_until = _after(now, lease_seconds) if leased else None
        stored = copy.deepcopy(row)
        stored.local_step_start = stored.local_lease_until = stored.local_db_now = None
        stored.step_started_at = now if row.in_flight else None
        stored.step_send_by = _after(now, send_seconds) if row.in_flight else None
        stored.lease_owner = worker if leased else None
        stored.lease_expires_at = lease_until
        stored.lease_epoch = 1 if leased else 0
        stored.next_attempt_at = lease_until or now
        stored.created_at = stored.updated_at = now
        self._rows[row.id] = stored
        self._events[row.id] = []
        payload = []
        for event in events:
            stored.event_seq += 1
            fields = {name: copy.deepcopy(getattr(event, name)) for name in _EVENT_FIELDS}
            payload.append({**fields, "seq": stored.event_seq, "worker": worker})
        self._append_events(row.id, payload, now)
        inserted = self._read(stored)
        if row.in_flight:
            inserted.local_step_start = sent_at
        if leased:
            inserted.local_lease_until = sent_at + lease_seconds
        return inserted

    async def claim(self, checkout_id: uuid.UUID, *, worker: str, lease_seconds: float) -> Claim:
        """Take the lease of one checkout (bumping its epoch), as `Repository.claim` does."""
        await asyncio.sleep(0)
        return self.claim_now(checkout_id, worker=worker, lease_seconds=lease_seconds)

    def claim_now(self, checkout_id: uuid.UUID, *, worker: str, lease_seconds: float) -> Claim:
        """`claim` without a round trip: another worker taking the row over between two steps
        of a drive (from a crash point's hook, which cannot await)."""
        stored = self._rows.get(checkout_id)
        if stored is None:
            raise CheckoutNotFound(f"no checkout with id {checkout_id}")
        sent_at = local_clock()
        now = self.clock()
        expired = stored.lease_expires_at is None or stored.lease_expires_at < now
        if stored.state in states.TERMINAL_STATES:
            return Claim(self._read(stored), None)
        if stored.lease_owner is not None and not expired:
            raise CheckoutBusy(f"checkout {checkout_id} is leased by {stored.lease_owner}")
        previous = stored.lease_owner
        lease_until = _after(now, lease_seconds)
        stored.lease_owner = worker
        stored.lease_expires_at = lease_until
        stored.next_attempt_at = stored.next_attempt_at or lease_until
        stored.lease_epoch += 1
        stored.version += 1
        stored.updated_at = now
        if previous is not None:
            stored.recoveries += 1 if stored.in_flight else 0
            stored.event_seq += 1
            taken = Event(
                "lease_taken_over",
                from_state=stored.state,
                to_state=stored.state,
                step=stored.pending_step,
                detail={
                    "previous_owner": previous,
                    "in_flight": stored.in_flight,
                    "recoveries": stored.recoveries,
                },
            )
            fields = {name: getattr(taken, name) for name in _EVENT_FIELDS}
            self._append_events(
                checkout_id, [{**fields, "seq": stored.event_seq, "worker": worker}], now
            )
        claimed = self._read(stored)
        claimed.local_lease_until = sent_at + lease_seconds
        return Claim(claimed, previous)

    async def get(self, checkout_id: uuid.UUID) -> CheckoutRow | None:
        stored = self._rows.get(checkout_id)
        return None if stored is None else self._read(stored)

    async def events(self, checkout_id: uuid.UUID) -> list[dict[str, Any]]:
        """One checkout's audit trail, in order (copies: the trail itself is never handed out)."""
        return sorted(copy.deepcopy(self._events.get(checkout_id, [])), key=lambda e: e["seq"])

    def _read(self, stored: CheckoutRow) -> CheckoutRow:
        """A copy of the stored row, as a SELECT returns it with the database's time."""
        row = copy.deepcopy(stored)
        row.local_db_now = (self.clock(), local_clock())
        return row
