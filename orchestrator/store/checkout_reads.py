"""Reading one checkout and its audit trail, on any `QueryRunner`: the repository's engine or
pool, or the read-only CLI's plain psycopg connection (which starts without SQLAlchemy)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from orchestrator.clock import local_clock
from orchestrator.store import checkout_sql as sql
from orchestrator.store.query_runner import QueryRunner
from orchestrator.store.records import CheckoutRow, Failure

__all__ = ["events", "failed_with_failures", "get", "get_by_app_order_id", "last_failure"]


async def get(runner: QueryRunner, ref: uuid.UUID | str) -> CheckoutRow | None:
    """A checkout by id, app_order_id or Violet order id (a string of digits)."""
    if isinstance(ref, uuid.UUID):
        return await _get(runner, sql.GET_BY_ID_SQL, ref)
    if isinstance(ref, int) and not isinstance(ref, bool):
        ref = str(ref)  # a Violet order id given as a number
    if not isinstance(ref, str) or "\x00" in ref:
        return None  # no checkout can have it (and PostgreSQL refuses a NUL)
    try:
        return await _get(runner, sql.GET_BY_ID_SQL, uuid.UUID(ref))
    except ValueError:
        pass
    row = await _get(runner, sql.GET_BY_APP_ORDER_ID_SQL, ref)
    if row is None and ref.isascii() and ref.isdigit() and len(ref) <= 18:
        row = await _get(runner, sql.GET_BY_VIOLET_ORDER_ID_SQL, int(ref))
    return row


async def get_by_app_order_id(runner: QueryRunner, app_order_id: str) -> CheckoutRow | None:
    """The checkout with this app_order_id, whatever it looks like (a UUID, digits)."""
    return await _get(runner, sql.GET_BY_APP_ORDER_ID_SQL, app_order_id)


async def _get(runner: QueryRunner, query: str, ref: Any) -> CheckoutRow | None:
    found = await runner.rows(query, {"ref": ref})
    if not found:
        return None
    row = CheckoutRow.from_mapping(found[0])
    row.local_db_now = (found[0]["db_now"], local_clock())
    return row


async def events(runner: QueryRunner, checkout_id: uuid.UUID) -> list[dict[str, Any]]:
    """One checkout's audit trail, in order."""
    return await runner.rows(sql.EVENTS_SQL, {"id": checkout_id})


async def last_failure(runner: QueryRunner, checkout_id: uuid.UUID) -> Failure | None:
    """Where the checkout last failed, from its audit trail (None: no failure recorded)."""
    found = await runner.rows(sql.LAST_FAILURE_SQL, {"id": checkout_id})
    return _failure(found[0]) if found else None


async def failed_with_failures(
    runner: QueryRunner,
    *,
    error_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int,
) -> list[tuple[CheckoutRow, Failure | None]]:
    """Failed checkouts newest first (created in [since, until), last error of `error_type`),
    each with where it failed: one statement, whatever their number."""
    where = ""
    params: dict[str, Any] = {"limit": limit}
    if since is not None:
        where += " AND c.created_at >= %(since)s"
        params["since"] = since
    if until is not None:
        where += " AND c.created_at < %(until)s"
        params["until"] = until
    if error_type is not None:
        # Both conditions, so the planner may use the partial `last_error->>'type'` index.
        where += " AND c.last_error IS NOT NULL AND c.last_error->>'type' = %(error_type)s"
        params["error_type"] = error_type
    found = await runner.rows(sql.FAILED_WITH_FAILURES_SQL.format(where=where), params)
    read_at = local_clock()
    rows = []
    for item in found:
        row = CheckoutRow.from_mapping(item)
        row.local_db_now = (item["db_now"], read_at)
        rows.append((row, _failure(item) if item["failed_from"] is not None else None))
    return rows


def _failure(found: dict[str, Any]) -> Failure:
    return Failure(state=found["failed_from"], step=found["failed_step"])
