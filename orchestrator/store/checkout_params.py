"""What the checkout statements send (store/checkout_sql.py) and what their answers set on a row.

Plain dicts, serialised once with orjson: the step write is the hot path, and its client CPU
per step is a benchmarked figure (bench/writes.py). No SQL and no connection here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg.errors import LockNotAvailable

from orchestrator import states
from orchestrator.clock import local_clock
from orchestrator.store import changes
from orchestrator.store.records import CheckoutRow, Event

_TOTALS = ("sub_total", "shipping_total", "tax_total", "discount_total", "total")
_EVENT_FIELDS = tuple(Event.__dataclass_fields__)
#: What a write's answer (RETURNING) sets on the caller's row.
_WRITTEN = (
    "version",
    "next_attempt_at",
    "lease_expires_at",
    "step_started_at",
    "step_send_by",
    "updated_at",
    "finished_at",
)


@dataclass(frozen=True, slots=True)
class Claim:
    """A checkout whose lease we just took; `previous_owner` set means we took it over."""

    row: CheckoutRow
    previous_owner: str | None


def dumps(value: Any) -> str:
    # orjson: ~5x less CPU than json.dumps for the event payloads of every step write.
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def change(write: dict[str, Any]) -> dict[str, Any] | None:
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


def write_params(write: dict[str, Any]) -> dict[str, Any]:
    """The parameters of one step write (checkout_sql.WRITE_SQL)."""
    params = dict(write)
    for name in ("bags", "last_error", "events"):
        params[name] = None if write[name] is None else dumps(write[name])
    found = change(write)
    params["change"] = None if found is None else dumps(found)
    return params


def write_many_params(writes: list[dict[str, Any]]) -> dict[str, Any]:
    """The parameters of several step writes in one statement (checkout_sql.WRITE_MANY_SQL)."""
    rows = [{k: v for k, v in w.items() if k not in ("events", "worker")} for w in writes]
    for row in rows:
        row["change"] = change(row)
    return {"rows": dumps(rows), "events": dumps(children(writes))}


def insert_params(insert: dict[str, Any]) -> dict[str, Any]:
    """The parameters of one insert (checkout_sql.INSERT_SQL)."""
    return dict(insert, request=dumps(insert["request"]), events=dumps(insert["events"]))


def insert_many_params(inserts: list[dict[str, Any]]) -> dict[str, Any]:
    """The parameters of several inserts in one statement (checkout_sql.INSERT_MANY_SQL)."""
    rows = [{k: v for k, v in i.items() if k not in ("events", "worker")} for i in inserts]
    return {"rows": dumps(rows), "events": dumps(children(inserts))}


def children(parents: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def events_payload(row: CheckoutRow, events: Sequence[Event]) -> list[dict[str, Any]]:
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


def insert_payload(
    row: CheckoutRow,
    events: Sequence[Event],
    *,
    worker: str,
    lease_seconds: float,
    leased: bool,
    send_seconds: float | None,
) -> dict[str, Any]:
    """A new checkout's insert, its events numbered after the row's last seq (advances it)."""
    return {
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
        "events": events_payload(row, events),
        "event_seq": row.event_seq,
    }


def write_payload(
    row: CheckoutRow,
    events: Sequence[Event],
    *,
    worker: str,
    lease_seconds: float,
    keep_lease: bool,
    start_step: bool,
    send_seconds: float | None,
    due_in: float | None,
    terminal: bool,
) -> dict[str, Any]:
    """A leased row's step write as it is when called, its events numbered (advances the row)."""
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
        "events": events_payload(row, events),
    }
    write["event_seq"] = row.event_seq
    return write


def apply_written(
    row: CheckoutRow, write: dict[str, Any], written: dict[str, Any], sent_at: float
) -> None:
    """Set on the caller's row what its write stored, and the local clock marks (records.py)
    from `sent_at`, an instant taken just before the statement was handed on."""
    if "withheld" in write:  # the row now holds what was stored, not what was refused
        row.bags = write["withheld"]["bags"]
        row.last_error = write["withheld"]["last_error"]
    for name in _WRITTEN:
        setattr(row, name, written[name])
    keep_lease = write["lease_owner"] is not None
    row.lease_owner = write["lease_owner"]
    if write["start_step"]:
        row.local_step_start = sent_at
    row.local_lease_until = sent_at + write["lease_s"] if keep_lease else None


def inserted(found: dict[str, Any], insert: dict[str, Any], sent_at: float) -> CheckoutRow:
    """The row an insert stored, with its local marks (records.py) from `sent_at`, an instant
    taken just before the statement was handed on: its step start, its lease's expiry."""
    stored = CheckoutRow.from_mapping(found)
    stored.local_db_now = (found["db_now"], local_clock())
    if insert["in_flight"]:
        stored.local_step_start = sent_at
    if insert["lease_owner"] is not None:
        stored.local_lease_until = sent_at + insert["lease_s"]
    return stored


def claimed(found: dict[str, Any], lease_until: float) -> CheckoutRow:
    """A claimed row with its local marks: the lease's expiry on the local clock, and the
    database's time of the claim with the local clock read after its answer (records.py)."""
    row = CheckoutRow.from_mapping(found)
    row.local_lease_until = lease_until
    row.local_db_now = (found["db_now"], local_clock())
    return row


def read(found: dict[str, Any]) -> CheckoutRow:
    """A row as a statement returned it, with the database's time of it (records.py)."""
    row = CheckoutRow.from_mapping(found)
    row.local_db_now = (found["db_now"], local_clock())
    return row


def lock_not_available(exc: BaseException) -> bool:
    """PostgreSQL's lock_not_available: raised as is through the pool, wrapped (`orig`) by the
    engine. Never matched by text: the engine's messages quote the statement's parameters."""
    return isinstance(exc, LockNotAvailable) or isinstance(
        getattr(exc, "orig", None), LockNotAvailable
    )
