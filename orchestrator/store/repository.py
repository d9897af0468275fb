"""Every SQL statement the runner and the recovery job issue, in one place.

The hot path is `write`: one statement (a data-modifying CTE) per step that updates the row,
appends the audit events and, when it makes one, the feed's change, fenced by the lease epoch so
a worker that lost its lease can never overwrite the one that took over. Statements are plain SQL
sent with `exec_driver_sql` (no per-call compilation): client CPU per step is a benchmarked figure.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg import pq
from psycopg.errors import LockNotAvailable
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import states
from orchestrator.clock import local_clock
from orchestrator.errors import CheckoutBusy, CheckoutNotFound, InvalidRequest, LeaseLost
from orchestrator.store import changes
from orchestrator.store.group_commit import GroupCommitter
from orchestrator.store.records import ROW_COLUMNS, CheckoutRow, Event
from orchestrator.store.withhold import tripwire_finding, withhold_write

log = logging.getLogger(__name__)

_EVENT_COLUMNS = (
    "seq int, kind text, from_state text, to_state text, step text, attempt int, "
    "http_method text, http_path text, http_status int, latency_ms real, request_body jsonb, "
    "response_body jsonb, error_class text, error_type text, error_message text, detail jsonb"
)
_EVENT_NAMES = (
    "seq, kind, from_state, to_state, step, attempt, http_method, http_path, http_status, "
    "latency_ms, request_body, response_body, error_class, error_type, error_message, detail"
)
_E_EVENT_NAMES = ", ".join("e." + name.strip() for name in _EVENT_NAMES.split(","))

_INSERT_EVENTS = f"""
    INSERT INTO checkout_events (checkout_id, worker, {_EVENT_NAMES})
    SELECT %(id)s, %(worker)s, {_E_EVENT_NAMES}
    FROM upd, jsonb_to_recordset(%(events)s::jsonb) AS e({_EVENT_COLUMNS})
"""

_LEASE_UNTIL = "now() + %(lease_s)s * interval '1 second'"
_BATCH_LEASE_UNTIL = "now() + d.lease_s * interval '1 second'"
# When a step's request must have left by: the sender's send window from the step's start.
_SEND_BY = "now() + %(send_s)s * interval '1 second'"
_BATCH_SEND_BY = "now() + d.send_s * interval '1 second'"

_INSERT_SQL = f"""
WITH upd AS (
    INSERT INTO checkouts (
        id, app_order_id, state, request, payment_kind, currency, pending_step, in_flight,
        attempt, step_started_at, step_send_by, lease_owner, lease_expires_at, lease_epoch,
        next_attempt_at, event_seq
    ) VALUES (
        %(id)s, %(app_order_id)s, '{states.INITIAL}', %(request)s::jsonb, %(payment_kind)s,
        %(currency)s, %(pending_step)s, %(in_flight)s, %(attempt)s,
        CASE WHEN %(in_flight)s THEN now() END,
        CASE WHEN %(in_flight)s THEN {_SEND_BY} END,
        %(lease_owner)s, CASE WHEN %(lease_owner)s::text IS NOT NULL THEN {_LEASE_UNTIL} END,
        CASE WHEN %(lease_owner)s::text IS NOT NULL THEN 1 ELSE 0 END,
        CASE WHEN %(lease_owner)s::text IS NOT NULL THEN {_LEASE_UNTIL} ELSE now() END,
        %(event_seq)s
    )
    ON CONFLICT (app_order_id) DO NOTHING
    RETURNING {ROW_COLUMNS}, now() AS db_now
), ev AS ({_INSERT_EVENTS})
SELECT * FROM upd
"""

# Several new checkouts in one statement (group commit, like the step writes).
_INSERT_MANY_SQL = f"""
WITH d AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS d(
        id uuid, app_order_id text, request jsonb, payment_kind text, currency text,
        pending_step text, in_flight bool, attempt int, lease_owner text, lease_s float8,
        send_s float8, event_seq int)
), upd AS (
    INSERT INTO checkouts (
        id, app_order_id, state, request, payment_kind, currency, pending_step, in_flight,
        attempt, step_started_at, step_send_by, lease_owner, lease_expires_at, lease_epoch,
        next_attempt_at, event_seq
    )
    SELECT
        d.id, d.app_order_id, '{states.INITIAL}', d.request, d.payment_kind, d.currency,
        d.pending_step, d.in_flight, d.attempt, CASE WHEN d.in_flight THEN now() END,
        CASE WHEN d.in_flight THEN {_BATCH_SEND_BY} END, d.lease_owner,
        CASE WHEN d.lease_owner IS NOT NULL THEN {_BATCH_LEASE_UNTIL} END,
        CASE WHEN d.lease_owner IS NOT NULL THEN 1 ELSE 0 END,
        CASE WHEN d.lease_owner IS NOT NULL THEN {_BATCH_LEASE_UNTIL} ELSE now() END,
        d.event_seq
    FROM d ORDER BY d.app_order_id
    ON CONFLICT (app_order_id) DO NOTHING
    RETURNING {ROW_COLUMNS}, now() AS db_now
), ev AS (
    INSERT INTO checkout_events (checkout_id, worker, {_EVENT_NAMES})
    SELECT e.checkout_id, e.worker, {_E_EVENT_NAMES}
    FROM jsonb_to_recordset(%(events)s::jsonb) AS e(checkout_id uuid, worker text, {_EVENT_COLUMNS})
    JOIN upd ON upd.id = e.checkout_id
)
SELECT * FROM upd
"""

_TOTALS = ("sub_total", "shipping_total", "tax_total", "discount_total", "total")


def _change(write: dict[str, Any]) -> dict[str, Any] | None:
    """The change a write makes for the host's feed (store/changes.py), if it may make one.

    A checkout that reaches a terminal state or starts waiting for input is a change the host
    acts on; anything else is not, and costs no more than this test. Built from the write as
    it is sent (the values the tripwire withheld, if any), so the feed says what is stored."""
    state = write["state"]
    if state in states.TERMINAL_STATES:
        detail = {
            "state": state,
            "violet_order_id": write["violet_order_id"],
            "currency": write["currency"],
            "totals": {name: write[name] for name in _TOTALS},
        }
        if state == states.FAILED:
            detail["error_type"] = (write["last_error"] or {}).get("type")
        return {"kind": changes.CHECKOUT_FINISHED, "detail": detail}
    if state in states.WAITING_STATES and write["waiting_reason"] is not None:
        detail = {"state": state, "waiting_reason": write["waiting_reason"]}
        return {"kind": changes.CHECKOUT_WAITING, "detail": detail}
    return None


def _append_change(checkout_id: str, new_state: str, old: str, source: str) -> str:
    """The CTE that appends a write's change (`c`, from `_change`) in the write's statement, so
    the feed holds it exactly when the write is stored; `source` yields a row only when the
    fenced update was made. Appended once: by the write that enters the terminal state, or the
    one that starts a wait (a waiting row written again, its lease released say, is no change).
    Kept short: psycopg caches the parse of a statement of up to 4 kB only."""
    return f"""
    INSERT INTO checkout_changes (checkout_id, app_order_id, kind, detail)
    SELECT {checkout_id}, {old}app_order_id, c.kind, c.detail FROM {source}
    WHERE c.kind IS NOT NULL AND ({new_state} IS DISTINCT FROM {old}state
        OR c.kind = '{changes.CHECKOUT_WAITING}' AND {old}waiting_reason IS NULL)
"""


_WRITE_SQL = f"""
WITH upd AS (
    UPDATE checkouts SET
        state = %(state)s,
        version = version + 1,
        pending_step = %(pending_step)s,
        in_flight = %(in_flight)s,
        step_no = %(step_no)s,
        attempt = %(attempt)s,
        step_started_at = CASE WHEN %(start_step)s THEN now() ELSE step_started_at END,
        step_send_by = CASE WHEN %(start_step)s THEN {_SEND_BY} ELSE step_send_by END,
        lease_owner = %(lease_owner)s,
        lease_expires_at = CASE
            WHEN %(lease_owner)s::text IS NULL THEN NULL ELSE {_LEASE_UNTIL} END,
        next_attempt_at = CASE
            WHEN %(lease_owner)s::text IS NOT NULL THEN {_LEASE_UNTIL}
            WHEN %(due_in)s::float8 IS NULL THEN NULL
            ELSE now() + %(due_in)s * interval '1 second' END,
        recoveries = %(recoveries)s,
        event_seq = %(event_seq)s,
        violet_order_id = %(violet_order_id)s,
        sub_total = %(sub_total)s,
        shipping_total = %(shipping_total)s,
        tax_total = %(tax_total)s,
        discount_total = %(discount_total)s,
        total = %(total)s,
        bags = %(bags)s::jsonb,
        violet_status = %(violet_status)s,
        waiting_reason = %(waiting_reason)s,
        last_error = %(last_error)s::jsonb,
        updated_at = now(),
        finished_at = CASE WHEN %(terminal)s THEN now() END
    WHERE id = %(id)s AND lease_epoch = %(lease_epoch)s
    RETURNING version, next_attempt_at, lease_expires_at, step_started_at, step_send_by,
              updated_at, finished_at
), ev AS ({_INSERT_EVENTS}),
-- The row as it was before this write (every CTE reads the same snapshot).
prev AS (SELECT state, waiting_reason, app_order_id FROM checkouts WHERE id = %(id)s),
ch AS ({
    _append_change(
        "%(id)s",
        "%(state)s",
        "prev.",
        "upd, prev, jsonb_to_record(%(change)s::jsonb) AS c(kind text, detail jsonb)",
    )
})
SELECT * FROM upd
"""

_BATCH_ROW_COLUMNS = (
    "id uuid, lease_epoch bigint, state text, pending_step text, in_flight bool, step_no int, "
    "attempt int, start_step bool, lease_owner text, lease_s float8, send_s float8, "
    "due_in float8, "
    "recoveries int, event_seq int, violet_order_id bigint, sub_total bigint, "
    "shipping_total bigint, tax_total bigint, discount_total bigint, total bigint, bags jsonb, "
    "violet_status text, waiting_reason text, last_error jsonb, terminal bool, change jsonb"
)

# The same write for several checkouts in one statement (group commit, see group_commit.py).
# Rows are locked in id order first, so two batches (or a batch and a lease renewal) never
# deadlock; a row whose lease epoch moved on is simply not in `upd`, and neither are its events.
_WRITE_MANY_SQL = f"""
WITH d AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS d({_BATCH_ROW_COLUMNS})
), locked AS (
    SELECT c.id, c.state, c.waiting_reason, c.app_order_id
    FROM checkouts c JOIN d ON c.id = d.id AND c.lease_epoch = d.lease_epoch
    ORDER BY c.id FOR UPDATE OF c
), upd AS (
    UPDATE checkouts c SET
        state = d.state,
        version = c.version + 1,
        pending_step = d.pending_step,
        in_flight = d.in_flight,
        step_no = d.step_no,
        attempt = d.attempt,
        step_started_at = CASE WHEN d.start_step THEN now() ELSE c.step_started_at END,
        step_send_by = CASE WHEN d.start_step THEN {_BATCH_SEND_BY} ELSE c.step_send_by END,
        lease_owner = d.lease_owner,
        lease_expires_at = CASE WHEN d.lease_owner IS NULL THEN NULL ELSE {_BATCH_LEASE_UNTIL} END,
        next_attempt_at = CASE
            WHEN d.lease_owner IS NOT NULL THEN {_BATCH_LEASE_UNTIL}
            WHEN d.due_in IS NULL THEN NULL
            ELSE now() + d.due_in * interval '1 second' END,
        recoveries = d.recoveries,
        event_seq = d.event_seq,
        violet_order_id = d.violet_order_id,
        sub_total = d.sub_total,
        shipping_total = d.shipping_total,
        tax_total = d.tax_total,
        discount_total = d.discount_total,
        total = d.total,
        bags = d.bags,
        violet_status = d.violet_status,
        waiting_reason = d.waiting_reason,
        last_error = d.last_error,
        updated_at = now(),
        finished_at = CASE WHEN d.terminal THEN now() END
    FROM d JOIN locked USING (id)
    WHERE c.id = d.id
    RETURNING c.id, c.version, c.next_attempt_at, c.lease_expires_at, c.step_started_at,
              c.step_send_by, c.updated_at, c.finished_at
), ev AS (
    INSERT INTO checkout_events (checkout_id, worker, {_EVENT_NAMES})
    SELECT e.checkout_id, e.worker, {_E_EVENT_NAMES}
    FROM jsonb_to_recordset(%(events)s::jsonb) AS e(checkout_id uuid, worker text, {_EVENT_COLUMNS})
    JOIN upd ON upd.id = e.checkout_id
), ch AS ({
    _append_change(
        "d.id",
        "d.state",
        "locked.",
        "d JOIN upd USING (id) JOIN locked USING (id), "
        "jsonb_to_record(d.change) AS c(kind text, detail jsonb)",
    )
})
SELECT * FROM upd
"""

_CLAIM_TEMPLATE = f"""
WITH cur AS (
    SELECT id, lease_owner AS prev_owner, in_flight AS prev_in_flight
    FROM checkouts
    WHERE {{where}}
    {{order}}
    FOR UPDATE {{skip}}
), upd AS (
    UPDATE checkouts c SET
        lease_owner = %(worker)s,
        lease_expires_at = {_LEASE_UNTIL},
        -- Left as it is (a claimed row is found again once its lease expired, whatever its
        -- due time), so a claim changes no indexed column and can be a HOT update (~7 fewer
        -- index entries per claimed row). A row that was never due gets the lease expiry.
        next_attempt_at = COALESCE(c.next_attempt_at, {_LEASE_UNTIL}),
        lease_epoch = c.lease_epoch + 1,
        version = c.version + 1,
        recoveries = c.recoveries + CASE
            WHEN cur.prev_owner IS NOT NULL AND cur.prev_in_flight THEN 1 ELSE 0 END,
        event_seq = c.event_seq + CASE WHEN cur.prev_owner IS NOT NULL THEN 1 ELSE 0 END,
        updated_at = now()
    FROM cur
    WHERE c.id = cur.id
    RETURNING {", ".join("c." + name for name in ROW_COLUMNS.split(", "))}, cur.prev_owner,
              now() AS db_now
), ev AS (
    INSERT INTO checkout_events (checkout_id, seq, kind, from_state, to_state, step, worker, detail)
    SELECT id, event_seq, 'lease_taken_over', state, state, pending_step, %(worker)s,
           jsonb_build_object('previous_owner', prev_owner, 'in_flight', in_flight,
                              'recoveries', recoveries)
    FROM upd WHERE prev_owner IS NOT NULL
)
SELECT * FROM upd
"""

_CLAIMABLE = (
    f"state NOT IN {states.TERMINAL_SQL} AND (lease_owner IS NULL OR lease_expires_at < now())"
)
_CLAIM_ONE_SQL = _CLAIM_TEMPLATE.format(
    where=f"id = %(id)s AND {_CLAIMABLE}", order="", skip="NOWAIT"
)
_CLAIM_DUE_SQL = _CLAIM_TEMPLATE.format(
    where=f"next_attempt_at <= now() AND {_CLAIMABLE}",
    order="ORDER BY next_attempt_at LIMIT %(limit)s",
    skip="SKIP LOCKED",
)


_EVENT_FIELDS = tuple(Event.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Claim:
    """A checkout whose lease we just took; `previous_owner` set means we took it over."""

    row: CheckoutRow
    previous_owner: str | None


def _dumps(value: Any) -> str:
    # orjson: ~5x less CPU than json.dumps for the event payloads of every step write.
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _write_params(write: dict[str, Any]) -> dict[str, Any]:
    params = dict(write)
    for name in ("bags", "last_error", "events"):
        params[name] = None if write[name] is None else _dumps(write[name])
    change = _change(write)
    params["change"] = None if change is None else _dumps(change)
    return params


def _children(parents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every parent's events in one list, each tagged with its checkout id and worker.

    Tagged in place (no copies on the hot path): if the grouped statement fails, the one-write
    fallback sends the tags too, and jsonb_to_recordset ignores keys it was not asked for.
    """
    out = []
    for parent in parents:
        for item in parent["events"]:
            item["checkout_id"] = parent["id"]
            item["worker"] = parent["worker"]
            out.append(item)
    return out


def _events_payload(row: CheckoutRow, events: Sequence[Event]) -> list[dict[str, Any]]:
    """The events as dicts with consecutive seqs after the row's last one (advances the row)."""
    payload = []
    for event in events:
        row.event_seq += 1
        # Shallow, and only the fields set: jsonb_to_recordset reads a missing key as NULL.
        item = {
            name: value for name in _EVENT_FIELDS if (value := getattr(event, name)) is not None
        }
        item["seq"] = row.event_seq
        payload.append(item)
    return payload


def _claimed(found: dict[str, Any], lease_until: float) -> CheckoutRow:
    """A claimed row with its local marks: the lease's expiry on the local clock, and the
    database's time of the claim with the local clock read after its answer (records.py)."""
    row = CheckoutRow.from_mapping(found)
    row.local_lease_until = lease_until
    row.local_db_now = (found["db_now"], local_clock())
    return row


def _lock_not_available(exc: BaseException) -> bool:
    """PostgreSQL's lock_not_available: raised as is through the pool, wrapped (`orig`) by the
    engine. Never matched by text: the engine's messages quote the statement's parameters."""
    return isinstance(exc, LockNotAvailable) or isinstance(
        getattr(exc, "orig", None), LockNotAvailable
    )


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

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
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
        insert = {
            "id": row.id,
            "app_order_id": row.app_order_id,
            "request": row.request,
            "payment_kind": row.payment_kind,
            "currency": row.currency,
            "pending_step": row.pending_step,
            "in_flight": row.in_flight,
            "attempt": row.attempt,
            "lease_owner": worker if leased else None,
            "lease_s": lease_seconds,
            "send_s": send_seconds,
            "worker": worker,
            "events": _events_payload(row, events),
            "event_seq": row.event_seq,
        }
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
        if found is None:
            return None
        inserted = CheckoutRow.from_mapping(found)
        inserted.local_db_now = (found["db_now"], local_clock())
        if row.in_flight:
            inserted.local_step_start = sent_at
        if leased:
            inserted.local_lease_until = sent_at + lease_seconds
        return inserted

    async def _insert_one(self, insert: dict[str, Any]) -> dict[str, Any] | None:
        params = dict(insert, request=_dumps(insert["request"]), events=_dumps(insert["events"]))
        return await self._row(_INSERT_SQL, params)

    async def _insert_many(self, inserts: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        rows = [{k: v for k, v in i.items() if k not in ("events", "worker")} for i in inserts]
        events = _children(inserts)
        found = {
            r["id"]: r
            for r in await self._rows(
                _INSERT_MANY_SQL, {"rows": _dumps(rows), "events": _dumps(events)}
            )
        }
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
        write = {
            "id": row.id,
            "lease_epoch": row.lease_epoch,
            "state": row.state,
            "pending_step": row.pending_step,
            "in_flight": row.in_flight,
            "step_no": row.step_no,
            "attempt": row.attempt,
            "start_step": start_step,
            "lease_owner": worker if keep_lease else None,
            "lease_s": lease_seconds,
            "send_s": send_seconds,
            "due_in": due_in,
            "recoveries": row.recoveries,
            "violet_order_id": row.violet_order_id,
            "sub_total": row.sub_total,
            "shipping_total": row.shipping_total,
            "tax_total": row.tax_total,
            "discount_total": row.discount_total,
            "total": row.total,
            "bags": row.bags,
            "violet_status": row.violet_status,
            "waiting_reason": row.waiting_reason,
            "last_error": row.last_error,
            "currency": row.currency,
            "terminal": terminal,
            "worker": worker,
            "events": _events_payload(row, events),
        }
        write["event_seq"] = row.event_seq
        return self._commit_write(
            row, write, seq_before=seq_before, worker=worker, keep_lease=keep_lease
        )

    async def _commit_write(
        self,
        row: CheckoutRow,
        write: dict[str, Any],
        *,
        seq_before: int,
        worker: str,
        keep_lease: bool,
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
        if "withheld" in write:  # the row now holds what was stored, not what was refused
            row.bags = write["withheld"]["bags"]
            row.last_error = write["withheld"]["last_error"]
        row.version = written["version"]
        row.next_attempt_at = written["next_attempt_at"]
        row.lease_expires_at = written["lease_expires_at"]
        row.step_started_at = written["step_started_at"]
        row.step_send_by = written["step_send_by"]
        row.updated_at = written["updated_at"]
        row.finished_at = written["finished_at"]
        row.lease_owner = worker if keep_lease else None
        if write["start_step"]:
            row.local_step_start = sent_at
        row.local_lease_until = sent_at + write["lease_s"] if keep_lease else None

    async def _write_one(self, write: dict[str, Any]) -> dict[str, Any] | None:
        """One step write as its own statement (None: the lease epoch moved on).

        A write the tripwire refuses for its text is made again with that text withheld
        (withhold.py): the state and the outcome are always recorded. The marker names the
        finding; should the marker itself be refused, a plain one is used."""
        try:
            return await self._row(_WRITE_SQL, _write_params(write))
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
            written = await self._row(_WRITE_SQL, _write_params(withheld))
        except Exception as exc:
            if tripwire_finding(exc) is None:
                raise
            withheld = withhold_write(write, None)
            written = await self._row(_WRITE_SQL, _write_params(withheld))
        write["withheld"] = withheld
        return written

    async def _write_many(self, writes: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        """Several checkouts' step writes in one statement; results in the order given."""
        rows = [{k: v for k, v in w.items() if k not in ("events", "worker")} for w in writes]
        for row in rows:
            row["change"] = _change(row)
        events = _children(writes)
        params = {"rows": _dumps(rows), "events": _dumps(events)}
        written = {r["id"]: r for r in await self._rows(_WRITE_MANY_SQL, params)}
        return [written.get(write["id"]) for write in writes]

    async def claim(self, checkout_id: uuid.UUID, *, worker: str, lease_seconds: float) -> Claim:
        """Take the lease of one checkout; CheckoutBusy if another live worker holds it."""
        params = {"id": checkout_id, "worker": worker, "lease_s": lease_seconds}
        current: CheckoutRow | None = None
        sent_at = local_clock()
        try:
            found = await self._row(_CLAIM_ONE_SQL, params)
            if found is None:
                current = await self._get("id = %(ref)s", checkout_id)
        except Exception as exc:  # NOWAIT: a row lock held by a writer right now means busy
            if _lock_not_available(exc):
                raise CheckoutBusy(
                    f"checkout {checkout_id} is being written by another worker"
                ) from None
            raise
        if found is not None:
            return Claim(_claimed(found, sent_at + lease_seconds), found["prev_owner"])
        if current is None:
            raise CheckoutNotFound(f"no checkout with id {checkout_id}")
        if current.lease_owner is not None:
            raise CheckoutBusy(
                f"checkout {checkout_id} is leased by {current.lease_owner} "
                f"until {current.lease_expires_at:%Y-%m-%dT%H:%M:%SZ}"
            )
        return Claim(current, None)  # terminal: nothing to claim, caller just reports it

    async def claim_due(self, *, worker: str, limit: int, lease_seconds: float) -> list[Claim]:
        """Claim up to `limit` due checkouts (retry due or lease expired), skipping locked ones."""
        params = {"worker": worker, "limit": limit, "lease_s": lease_seconds}
        sent_at = local_clock()
        rows = await self._rows(_CLAIM_DUE_SQL, params)
        return [Claim(_claimed(r, sent_at + lease_seconds), r["prev_owner"]) for r in rows]

    async def due_count(self) -> int:
        """How many checkouts could be claimed right now (what recovery reports as still due)."""
        sql = f"SELECT count(*) FROM checkouts WHERE next_attempt_at <= now() AND {_CLAIMABLE}"
        async with self._auto.connect() as conn:
            return int((await conn.exec_driver_sql(sql)).scalar_one())

    async def next_due_at(self) -> datetime | None:
        """The earliest `next_attempt_at` of a non-terminal checkout (leased ones included)."""
        # A leased row is not claimable before its lease expires, whatever its due time.
        sql = (
            "SELECT min(greatest(next_attempt_at, lease_expires_at)) FROM checkouts "
            f"WHERE state NOT IN {states.TERMINAL_SQL} AND next_attempt_at IS NOT NULL"
        )
        async with self._auto.connect() as conn:
            found: datetime | None = (await conn.exec_driver_sql(sql)).scalar_one()
        return found

    async def with_violet_order(
        self, *, since: datetime | None = None, sample: int | None = None
    ) -> list[CheckoutRow]:
        """Checkouts that have a Violet cart (created since `since`; a random `sample` of them)."""
        sql = f"SELECT {ROW_COLUMNS} FROM checkouts WHERE violet_order_id IS NOT NULL"
        params: dict[str, Any] = {}
        if since is not None:
            sql += " AND created_at >= %(since)s"
            params["since"] = since
        sql += (
            " ORDER BY random() LIMIT %(limit)s" if sample is not None else " ORDER BY created_at"
        )
        if sample is not None:
            params["limit"] = sample
        async with self._auto.connect() as conn:
            result = await conn.exec_driver_sql(sql, params)
            return [CheckoutRow.from_mapping(r) for r in result.mappings().all()]

    async def renew(
        self, ids: Sequence[uuid.UUID], *, worker: str, lease_seconds: float
    ) -> set[uuid.UUID]:
        """Extend the leases this worker still holds; returns the ids actually renewed."""
        if not ids:
            return set()
        # Rows locked in id order, as grouped step writes lock them: the two never deadlock.
        sql = (
            "WITH mine AS (SELECT id FROM checkouts WHERE id = ANY(%(ids)s) "
            "AND lease_owner = %(worker)s ORDER BY id FOR UPDATE) "
            f"UPDATE checkouts c SET lease_expires_at = {_LEASE_UNTIL} "
            "FROM mine WHERE c.id = mine.id RETURNING c.id"
        )
        params = {"ids": list(ids), "worker": worker, "lease_s": lease_seconds}
        return {r["id"] for r in await self._rows(sql, params)}

    async def states_of(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The state of each checkout among `ids` that exists."""
        rows = await self._rows(
            "SELECT id, state FROM checkouts WHERE id = ANY(%(ids)s)", {"ids": list(ids)}
        )
        return {r["id"]: r["state"] for r in rows}

    async def get(self, ref: uuid.UUID | str) -> CheckoutRow | None:
        """A checkout by id, app_order_id or Violet order id (a string of digits)."""
        if isinstance(ref, uuid.UUID):
            return await self._get("id = %(ref)s", ref)
        if isinstance(ref, int) and not isinstance(ref, bool):
            ref = str(ref)  # a Violet order id given as a number
        if not isinstance(ref, str) or "\x00" in ref:
            return None  # no checkout can have it (and PostgreSQL refuses a NUL)
        try:
            return await self._get("id = %(ref)s", uuid.UUID(ref))
        except ValueError:
            pass
        row = await self._get("app_order_id = %(ref)s", ref)
        if row is None and ref.isascii() and ref.isdigit() and len(ref) <= 18:
            row = await self._get("violet_order_id = %(ref)s", int(ref))
        return row

    async def get_by_app_order_id(self, app_order_id: str) -> CheckoutRow | None:
        """The checkout with this app_order_id, whatever it looks like (a UUID, digits)."""
        return await self._get("app_order_id = %(ref)s", app_order_id)

    async def _get(self, where: str, ref: Any) -> CheckoutRow | None:
        sql = f"SELECT {ROW_COLUMNS}, now() AS db_now FROM checkouts WHERE {where}"
        found = await self._row(sql, {"ref": ref})
        if found is None:
            return None
        row = CheckoutRow.from_mapping(found)
        row.local_db_now = (found["db_now"], local_clock())
        return row

    async def events(self, checkout_id: uuid.UUID) -> list[dict[str, Any]]:
        """One checkout's audit trail, in order."""
        return await self._rows(
            "SELECT * FROM checkout_events WHERE checkout_id = %(id)s ORDER BY seq",
            {"id": checkout_id},
        )

    async def throttle_until(self, key: str, *, cap: float) -> datetime | None:
        """When the shared Violet budget for `key` opens again (None: open now), at most `cap`
        seconds from now: a block that reaches further (one set by hand, say) is shortened to
        that in the same statement, so no stored block can stop the fleet for longer."""
        found = await self._row(
            "WITH blocked AS (SELECT blocked_until FROM violet_throttle "
            "  WHERE key = %(key)s AND blocked_until > now()), "
            "healed AS (UPDATE violet_throttle t SET "
            "  blocked_until = now() + %(cap)s * interval '1 second', updated_at = now() "
            "  FROM blocked WHERE t.key = %(key)s "
            "  AND blocked.blocked_until > now() + %(cap)s * interval '1 second') "
            "SELECT least(blocked_until, now() + %(cap)s * interval '1 second') AS blocked_until "
            "FROM blocked",
            {"key": key, "cap": cap},
        )
        return None if found is None else found["blocked_until"]

    async def throttle(self, key: str, seconds: float) -> None:
        """Close the shared Violet budget for `key` for `seconds` (never shortening a block)."""
        sql = (
            "INSERT INTO violet_throttle (key, blocked_until) "
            "VALUES (%(key)s, now() + %(s)s * interval '1 second') "
            "ON CONFLICT (key) DO UPDATE SET blocked_until = "
            "greatest(violet_throttle.blocked_until, EXCLUDED.blocked_until), updated_at = now()"
        )
        await self._rows(sql, {"key": key, "s": seconds})
