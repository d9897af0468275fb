"""Every statement the runner and the recovery job issue about checkouts, one method each.

The hot path is `write`: one statement per step (store/checkout_sql.py) that updates the row,
appends the audit events and, when it makes one, the feed's change, fenced by the lease epoch so
a worker that lost its lease can never overwrite the one that took over. What each statement
sends and what its answer sets on a row is store/checkout_params.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg import pq
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import observe, states
from orchestrator.clock import local_clock
from orchestrator.errors import CheckoutBusy, CheckoutNotFound, InvalidRequest, LeaseLost
from orchestrator.store import checkout_params as params
from orchestrator.store import checkout_reads
from orchestrator.store import checkout_sql as sql
from orchestrator.store.checkout_params import Claim
from orchestrator.store.group_commit import GroupCommitter
from orchestrator.store.records import ROW_COLUMNS, CheckoutRow, Event, Failure
from orchestrator.store.withhold import tripwire_finding, withhold_write

__all__ = ["Claim", "Repository"]

log = logging.getLogger(__name__)

#: A fair claim looks at this many due checkouts per checkout it may take (checkout_sql.py).
_CLAIM_WINDOW = 8


class Repository:
    """The only object that talks SQL; one transaction per method."""

    def __init__(
        self, engine: AsyncEngine, pool: AsyncConnectionPool | None = None, *, write_slots: int = 1
    ) -> None:
        self.engine = engine
        # Every method is one statement, atomic on its own: autocommit saves the BEGIN and
        # COMMIT round trips (two of three per step) that an explicit transaction would cost.
        self._auto = engine.execution_options(isolation_level="AUTOCOMMIT")
        # The hot path goes straight to psycopg when the owner gives a pool: SQLAlchemy's
        # async connection checkout costs ~350 us of CPU per statement, psycopg_pool ~120 us.
        self._pool = pool
        # Concurrent step writes share statements when they queue up (see group_commit.py);
        # `write_slots` statements may be in flight at once. One slot groups the most: at 16
        # concurrent checkouts 1.0 step-write statements per checkout instead of 2.4 with two,
        # ~0.7-1.0 ms less client CPU per checkout and a lower p50 (docs/performance.md).
        self._group: GroupCommitter[dict[str, Any], dict[str, Any] | None] | None = (
            GroupCommitter(self._write_one, self._write_many, slots=write_slots)
            if pool is not None
            else None
        )
        self._inserts: GroupCommitter[dict[str, Any], dict[str, Any] | None] | None = (
            GroupCommitter(self._insert_one, self._insert_many, slots=write_slots)
            if pool is not None
            else None
        )

    @property
    def group_commit(self) -> GroupCommitter[dict[str, Any], dict[str, Any] | None] | None:
        """The write coalescer (None without a psycopg pool); its counters feed the benches."""
        return self._group

    @property
    def insert_group(self) -> GroupCommitter[dict[str, Any], dict[str, Any] | None] | None:
        """The insert coalescer (None without a psycopg pool)."""
        return self._inserts

    async def drain(self) -> None:
        """Wait for every step write handed to the group committer (before closing the pool)."""
        for group in (self._group, self._inserts):
            if group is not None:
                await group.drain()

    async def _rows(self, sql: str, params: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        """Run one autocommitted statement and return its rows as dicts."""
        if self._pool is not None:
            async with self._pool.connection() as raw, raw.cursor(row_factory=dict_row) as cur:
                await cur.execute(sql, params)
                # Not `cur.description`: it builds a Column object per column (~10% of a write).
                status = cur.pgresult.status if cur.pgresult is not None else None
                returned = status == pq.ExecStatus.TUPLES_OK
                return await cur.fetchall() if returned else []
        async with self._auto.connect() as conn:
            result = await conn.exec_driver_sql(sql, params)
            return [dict(r) for r in result.mappings().all()] if result.returns_rows else []

    async def _row(self, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None

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
        """Insert a new checkout (and its first events); None if its app_order_id already exists.

        A row inserted with its first step in flight stores `send_seconds` from now as the last
        instant that step's request may leave (`step_send_by`; None: not stored)."""
        insert = params.insert_payload(
            row,
            events,
            worker=worker,
            lease_seconds=lease_seconds,
            leased=leased,
            send_seconds=send_seconds,
        )
        sent_at = local_clock()
        try:
            if self._inserts is not None:
                found = await self._inserts.submit(row.app_order_id, insert)
            else:
                found = await self._insert_one(insert)
        except Exception as exc:
            # Validation applies the same rules first; this is the database's last word on it.
            finding = tripwire_finding(exc)
            if finding is None:
                raise
            raise InvalidRequest([("request", f"refused by the database: {finding}")]) from None
        return None if found is None else params.inserted(found, insert, sent_at)

    async def _insert_one(self, insert: dict[str, Any]) -> dict[str, Any] | None:
        return await self._row(sql.INSERT_SQL, params.insert_params(insert))

    async def _insert_many(self, inserts: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        sent = params.insert_many_params(inserts)
        found = {r["id"]: r for r in await self._rows(sql.INSERT_MANY_SQL, sent)}
        return [found.get(insert["id"]) for insert in inserts]

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
        """Write the leased row back with its new events, fenced by `lease_epoch`; await it.

        The row's local clock marks (records.py) are set from an instant taken just before the
        statement is handed on, so they never run ahead of the database's `now()` in it.
        With `start_step` the step starts now, and must have sent its request within
        `send_seconds` (stored as `step_send_by`; None: not stored).
        `keep_lease` keeps the lease (the worker goes on); otherwise the lease is released and
        `due_in` seconds from now is when recovery should look again (None: never on its own).
        Raises LeaseLost when another worker took the checkout over meanwhile.
        The row is read when this is called, not when the coroutine runs: a caller may run the
        write behind other work (a task) and go on changing its copy, as long as it awaits the
        write before its next write of the same row (writes of one row land in order).
        """
        seq_before = row.event_seq
        write = params.write_payload(
            row,
            events,
            worker=worker,
            lease_seconds=lease_seconds,
            keep_lease=keep_lease,
            start_step=start_step,
            send_seconds=send_seconds,
            due_in=due_in,
            terminal=terminal,
        )
        return self._commit_write(row, write, seq_before=seq_before)

    async def _commit_write(
        self, row: CheckoutRow, write: dict[str, Any], *, seq_before: int
    ) -> None:
        sent_at = local_clock()
        try:
            if self._group is not None:
                written = await self._group.submit(row.id, write)
            else:
                written = await self._write_one(write)
        except BaseException:
            row.event_seq = seq_before
            raise
        if written is None:
            row.event_seq = seq_before
            raise LeaseLost(
                f"checkout {row.id}: lease epoch {row.lease_epoch} was taken over; write refused"
            )
        params.apply_written(row, write, written, sent_at)

    async def _write_one(self, write: dict[str, Any]) -> dict[str, Any] | None:
        """One step write as its own statement (None: the lease epoch moved on).

        A write the tripwire refuses for its text is made again with that text withheld
        (withhold.py): the state and the outcome are always recorded. The marker names the
        finding; should the marker itself be refused, a plain one is used."""
        try:
            return await self._row(sql.WRITE_SQL, params.write_params(write))
        except Exception as exc:
            finding = tripwire_finding(exc)
            if finding is None:
                raise
        log.warning(
            "checkout %s: the database refused the text of a write (%s); "
            "recorded it with the text withheld",
            write["id"],
            finding,
        )
        withheld = withhold_write(write, finding)
        try:
            written = await self._row(sql.WRITE_SQL, params.write_params(withheld))
        except Exception as exc:
            if tripwire_finding(exc) is None:
                raise
            withheld = withhold_write(write, None)
            written = await self._row(sql.WRITE_SQL, params.write_params(withheld))
        write["withheld"] = withheld
        return written

    async def _write_many(self, writes: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        """Several checkouts' step writes in one statement; results in the order given."""
        sent = params.write_many_params(writes)
        written = {r["id"]: r for r in await self._rows(sql.WRITE_MANY_SQL, sent)}
        return [written.get(write["id"]) for write in writes]

    async def claim(self, checkout_id: uuid.UUID, *, worker: str, lease_seconds: float) -> Claim:
        """Take the lease of one checkout; CheckoutBusy if another live worker holds it."""
        sent = {"id": checkout_id, "worker": worker, "lease_s": lease_seconds}
        current: CheckoutRow | None = None
        sent_at = local_clock()
        try:
            found = await self._row(sql.CLAIM_ONE_SQL, sent)
            if found is None:
                current = await self.get(checkout_id)
        except Exception as exc:  # NOWAIT: a row lock held by a writer right now means busy
            if params.lock_not_available(exc):
                raise CheckoutBusy(
                    f"checkout {checkout_id} is being written by another worker"
                ) from None
            raise
        if found is not None:
            if found["prev_owner"] is not None:
                observe.takeover("checkout")
            return Claim(params.claimed(found, sent_at + lease_seconds), found["prev_owner"])
        if current is None:
            raise CheckoutNotFound(f"no checkout with id {checkout_id}")
        if current.lease_owner is not None:
            raise CheckoutBusy(
                f"checkout {checkout_id} is leased by {current.lease_owner} "
                f"until {current.lease_expires_at:%Y-%m-%dT%H:%M:%SZ}"
            )
        return Claim(current, None)  # terminal: nothing to claim, caller just reports it

    async def claim_due(
        self, *, worker: str, limit: int, lease_seconds: float, budget_wait: float | None = None
    ) -> list[Claim]:
        """Claim up to `limit` due checkouts (retry due or lease expired), skipping locked ones.

        With `budget_wait` (per-merchant budgets on), the claim takes turns across merchants and
        defers the checkouts whose merchant's budget has no turn within that many seconds
        (checkout_sql.py `CLAIM_FAIR_SQL`); without it, the oldest due first."""
        sent: dict[str, Any] = {"worker": worker, "limit": limit, "lease_s": lease_seconds}
        statement = sql.CLAIM_DUE_SQL
        if budget_wait is not None:
            statement = sql.CLAIM_FAIR_SQL
            sent |= {"window": min(max(limit * _CLAIM_WINDOW, 64), 2000), "wait_s": budget_wait}
        sent_at = local_clock()
        rows = await self._rows(statement, sent)
        for row in rows:
            if row["prev_owner"] is not None:
                observe.takeover("checkout")
        return [Claim(params.claimed(r, sent_at + lease_seconds), r["prev_owner"]) for r in rows]

    async def due_count(self) -> int:
        """How many checkouts could be claimed right now (what recovery reports as still due)."""
        query = f"SELECT count(*) FROM checkouts WHERE next_attempt_at <= now() AND {sql.CLAIMABLE}"
        async with self._auto.connect() as conn:
            return int((await conn.exec_driver_sql(query)).scalar_one())

    async def next_due_at(self) -> datetime | None:
        """The earliest `next_attempt_at` of a non-terminal checkout (leased ones included)."""
        # A leased row is not claimable before its lease expires, whatever its due time.
        query = (
            "SELECT min(greatest(next_attempt_at, lease_expires_at)) FROM checkouts "
            f"WHERE state NOT IN {states.TERMINAL_SQL} AND next_attempt_at IS NOT NULL"
        )
        async with self._auto.connect() as conn:
            found: datetime | None = (await conn.exec_driver_sql(query)).scalar_one()
        return found

    async def with_violet_order(
        self, *, since: datetime | None = None, sample: int | None = None
    ) -> list[CheckoutRow]:
        """Checkouts that have a Violet cart (created since `since`; a random `sample` of them)."""
        query = f"SELECT {ROW_COLUMNS} FROM checkouts WHERE violet_order_id IS NOT NULL"
        sent: dict[str, Any] = {}
        if since is not None:
            query += " AND created_at >= %(since)s"
            sent["since"] = since
        query += (
            " ORDER BY random() LIMIT %(limit)s" if sample is not None else " ORDER BY created_at"
        )
        if sample is not None:
            sent["limit"] = sample
        async with self._auto.connect() as conn:
            result = await conn.exec_driver_sql(query, sent)
            return [CheckoutRow.from_mapping(r) for r in result.mappings().all()]

    async def renew(
        self, ids: Sequence[uuid.UUID], *, worker: str, lease_seconds: float
    ) -> set[uuid.UUID]:
        """Extend the leases this worker still holds; returns the ids actually renewed."""
        if not ids:
            return set()
        sent = {"ids": list(ids), "worker": worker, "lease_s": lease_seconds}
        return {r["id"] for r in await self._rows(sql.RENEW_SQL, sent)}

    async def states_of(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The state of each checkout among `ids` that exists."""
        rows = await self._rows(
            "SELECT id, state FROM checkouts WHERE id = ANY(%(ids)s)", {"ids": list(ids)}
        )
        return {r["id"]: r["state"] for r in rows}

    async def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one autocommitted statement (the repository is a `QueryRunner`: the checkout
        reads shared with the SQLAlchemy-free CLI run on it)."""
        return await self._rows(sql, params)

    async def get(self, ref: uuid.UUID | str) -> CheckoutRow | None:
        """A checkout by id, app_order_id or Violet order id (a string of digits)."""
        return await checkout_reads.get(self, ref)

    async def get_by_app_order_id(self, app_order_id: str) -> CheckoutRow | None:
        """The checkout with this app_order_id, whatever it looks like (a UUID, digits)."""
        return await checkout_reads.get_by_app_order_id(self, app_order_id)

    async def events(self, checkout_id: uuid.UUID) -> list[dict[str, Any]]:
        """One checkout's audit trail, in order."""
        return await checkout_reads.events(self, checkout_id)

    async def last_failure(self, checkout_id: uuid.UUID) -> Failure | None:
        """Where the checkout last failed, from its audit trail (None: no failure recorded)."""
        return await checkout_reads.last_failure(self, checkout_id)

    async def failed_with_failures(
        self,
        *,
        error_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int,
    ) -> list[tuple[CheckoutRow, Failure | None]]:
        """Failed checkouts newest first, filtered, each with where it failed."""
        return await checkout_reads.failed_with_failures(
            self, error_type=error_type, since=since, until=until, limit=limit
        )

    async def reopen(
        self,
        row: CheckoutRow,
        failure: Failure,
        events: Sequence[Event],
        *,
        change: dict[str, Any],
        worker: str,
        lease_seconds: float,
        leased: bool,
    ) -> CheckoutRow | None:
        """Reopen a failed checkout where it failed (store/checkout_sql.py `REOPEN_SQL`), with
        `events` and the feed's `change`; leased by `worker` when `leased`, else due now.

        Returns the reopened row, or None when the row is no longer as `row` was read (another
        retry, a lease held by a live worker): nothing is written then. `row` is left as read.
        """
        seq = row.event_seq
        payload = params.events_payload(row, events)
        event_seq, row.event_seq = row.event_seq, seq
        sent = {
            "id": row.id,
            "version": row.version,
            "state": failure.state,
            "pending_step": failure.step,
            "lease_owner": worker if leased else None,
            "lease_s": lease_seconds,
            "worker": worker,
            "event_seq": event_seq,
            "events": params.dumps(payload),
            "change": params.dumps(change),
        }
        sent_at = local_clock()
        try:
            found = await self._row(sql.REOPEN_SQL, sent)
        except Exception as exc:
            finding = tripwire_finding(exc)
            if finding is None:
                raise
            raise InvalidRequest([("reason", f"refused by the database: {finding}")]) from None
        if found is None:
            return None
        return params.claimed(found, sent_at + lease_seconds) if leased else params.read(found)

    async def throttle_until(self, key: str, *, cap: float) -> datetime | None:
        """When the shared Violet budget for `key` opens again (None: open now), at most `cap`
        seconds from now: a block that reaches further (one set by hand, say) is shortened to
        that in the same statement, so no stored block can stop the fleet for longer."""
        found = await self._row(sql.THROTTLE_UNTIL_SQL, {"key": key, "cap": cap})
        return None if found is None else found["blocked_until"]

    async def throttle(self, key: str, seconds: float) -> None:
        """Close the shared Violet budget for `key` for `seconds` (never shortening a block)."""
        await self._rows(sql.THROTTLE_SQL, {"key": key, "s": seconds})
