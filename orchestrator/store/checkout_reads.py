"""Reading one checkout and its audit trail, on any `QueryRunner`: the repository's engine or
pool, or the read-only CLI's plain psycopg connection (which starts without SQLAlchemy)."""

from __future__ import annotations

import uuid
from typing import Any

from orchestrator.clock import local_clock
from orchestrator.store import checkout_sql as sql
from orchestrator.store.query_runner import QueryRunner
from orchestrator.store.records import CheckoutRow

__all__ = ["events", "get", "get_by_app_order_id"]


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
