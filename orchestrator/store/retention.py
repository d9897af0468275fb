"""Pruning the audit trail's bulky parts once they are older than the retention window.

Every statement of the prune is here. What a pruned event or webhook body is, who may prune and
when, is the database's rule (migration 0014): the statements below call its functions
(`orchestrator_pruned_detail`, `orchestrator_pruned_stamp`) rather than restate them, so the
trigger that checks a prune and the prune itself cannot disagree. Each batch is one statement,
hence one short transaction; the rows left to prune are found through partial indexes that hold
nothing else, so a batch never scans the history and a killed run resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from orchestrator.store.query_runner import QueryRunner

__all__ = [
    "Pruned",
    "check_owner",
    "cutoff",
    "plan_events",
    "plan_inbox",
    "prune_events",
    "prune_inbox",
    "set_window",
    "vacuum",
    "window_days",
]


@dataclass(frozen=True, slots=True)
class Pruned:
    """Rows pruned (or, in a plan, to prune): how many, the bytes of column data they lose
    (bodies and bulky detail, less the marker added), and their oldest and newest times."""

    rows: int
    bytes: int
    oldest: datetime | None
    newest: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Pruned:
        return cls(int(row["n"]), int(row["bytes"]), row["oldest"], row["newest"])

    def __add__(self, other: Pruned) -> Pruned:
        def pick(a: datetime | None, b: datetime | None, best: Any) -> datetime | None:
            return a if b is None else b if a is None else best(a, b)

        return Pruned(
            self.rows + other.rows,
            self.bytes + other.bytes,
            pick(self.oldest, other.oldest, min),
            pick(self.newest, other.newest, max),
        )


NOTHING: Final = Pruned(0, 0, None, None)

_OWNER_SQL: Final = (
    "SELECT pg_has_role(current_user, c.relowner, 'USAGE') AS owner, current_user AS who, "
    "pg_get_userbyid(c.relowner) AS owner_name "
    "FROM pg_class c WHERE c.oid = 'checkout_events'::regclass"
)


async def check_owner(runner: QueryRunner) -> tuple[bool, str, str]:
    """Whether the connected role has the owner's privileges, its name and the owner's name."""
    (row,) = await runner.rows(_OWNER_SQL)
    return bool(row["owner"]), str(row["who"]), str(row["owner_name"])


async def cutoff(runner: QueryRunner, days: int) -> datetime:
    """The database's now() less `days`: rows older than this are outside the window."""
    (row,) = await runner.rows("SELECT now() - make_interval(days => %(d)s) AS at", {"d": days})
    at: datetime = row["at"]
    return at


async def window_days(runner: QueryRunner) -> int | None:
    """The window the database enforces (the owner's table), in days."""
    rows = await runner.rows("SELECT audit_days FROM audit_retention")
    return int(rows[0]["audit_days"]) if rows else None


async def set_window(runner: QueryRunner, days: int) -> None:
    """Make `days` the window the guards enforce (the owner's privilege alone)."""
    await runner.rows(
        "INSERT INTO audit_retention (id, audit_days) VALUES (true, %(d)s) "
        "ON CONFLICT (id) DO UPDATE SET audit_days = EXCLUDED.audit_days, updated_at = now() "
        "RETURNING audit_days",
        {"d": days},
    )


_SUMMARY: Final = (
    "SELECT count(*) AS n, coalesce(sum(freed), 0) AS bytes, min(at) AS oldest, "
    "max(at) AS newest FROM {source}"
)

# The predicate is the partial index's own, so the planner reads only that index.
_EVENTS_LEFT: Final = (
    "orchestrator_event_prunable(request_body, response_body, detail) AND at < %(cutoff)s"
)
_EVENT_BYTES: Final = (
    "coalesce(pg_column_size(request_body), 0) + coalesce(pg_column_size(response_body), 0) "
    "+ coalesce(pg_column_size(detail), 0)"
)

# What a row loses, the same expression in the plan and in the prune (the sizes of values as
# computed, before PostgreSQL packs a short one: an estimate, a few bytes high per row).
_EVENT_FREED: Final = (
    f"{_EVENT_BYTES} - coalesce(pg_column_size(orchestrator_pruned_detail("
    "request_body, response_body, detail, now())), 0)"
)

_PLAN_EVENTS_SQL: Final = _SUMMARY.format(
    source=f"""(
    SELECT at, {_EVENT_FREED} AS freed
    FROM checkout_events WHERE {_EVENTS_LEFT}) AS left_to_prune"""
)

_PRUNE_EVENTS_SQL: Final = f"""
WITH picked AS (
    SELECT checkout_id, seq, {_EVENT_FREED} AS freed
    FROM checkout_events WHERE {_EVENTS_LEFT}
    ORDER BY at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), pruned AS (
    UPDATE checkout_events e
    SET request_body = NULL, response_body = NULL,
        detail = orchestrator_pruned_detail(e.request_body, e.response_body, e.detail, now())
    FROM picked p
    WHERE e.checkout_id = p.checkout_id AND e.seq = p.seq
    RETURNING e.at, p.freed
)
{_SUMMARY.format(source="pruned")}
"""

# Settled events only: a pending or failed one is still to be applied. Again the index's predicate.
_INBOX_LEFT: Final = (
    "state IN ('applied', 'ignored') AND NOT body ? 'pruned_at' AND received_at < %(cutoff)s"
)
_PRUNED_BODY: Final = "jsonb_build_object('pruned_at', orchestrator_pruned_stamp(now()))"

_INBOX_FREED: Final = f"pg_column_size(body) - pg_column_size({_PRUNED_BODY})"

_PLAN_INBOX_SQL: Final = _SUMMARY.format(
    source=f"""(
    SELECT received_at AS at, {_INBOX_FREED} AS freed
    FROM webhook_inbox WHERE {_INBOX_LEFT}) AS left_to_prune"""
)

_PRUNE_INBOX_SQL: Final = f"""
WITH picked AS (
    SELECT event_id, {_INBOX_FREED} AS freed
    FROM webhook_inbox WHERE {_INBOX_LEFT}
    ORDER BY received_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), pruned AS (
    UPDATE webhook_inbox w SET body = {_PRUNED_BODY}
    FROM picked p
    WHERE w.event_id = p.event_id
    RETURNING w.received_at AS at, p.freed
)
{_SUMMARY.format(source="pruned")}
"""


async def _one(runner: QueryRunner, sql: str, params: dict[str, Any]) -> Pruned:
    (row,) = await runner.rows(sql, params)
    return Pruned.from_row(row)


async def plan_events(runner: QueryRunner, before: datetime) -> Pruned:
    """The events a prune at `before` would strip; reads only."""
    return await _one(runner, _PLAN_EVENTS_SQL, {"cutoff": before})


async def plan_inbox(runner: QueryRunner, before: datetime) -> Pruned:
    """The settled webhook events a prune at `before` would strip; reads only."""
    return await _one(runner, _PLAN_INBOX_SQL, {"cutoff": before})


async def prune_events(runner: QueryRunner, before: datetime, limit: int) -> Pruned:
    """Strip up to `limit` of the oldest events older than `before`, in one transaction (on an
    autocommit connection); rows=0 when none is left."""
    return await _one(runner, _PRUNE_EVENTS_SQL, {"cutoff": before, "limit": limit})


async def prune_inbox(runner: QueryRunner, before: datetime, limit: int) -> Pruned:
    """Replace the bodies of up to `limit` of the oldest settled webhook events older than
    `before` by the marker, in one transaction; rows=0 when none is left."""
    return await _one(runner, _PRUNE_INBOX_SQL, {"cutoff": before, "limit": limit})


#: The tables a prune changes, by the name its batches report.
TABLES: Final = {"events": "checkout_events", "inbox": "webhook_inbox"}


async def vacuum(runner: QueryRunner, table: str) -> None:
    """Make the space a prune freed reusable by the rows inserted next (plain VACUUM: reads and
    writes go on meanwhile; skipped when another vacuum holds the table). Autovacuum would come
    only after a fifth of a large table changed, long after a day's prune."""
    await runner.rows(f"VACUUM (SKIP_LOCKED) {TABLES[table]}")
