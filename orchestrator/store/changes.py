"""The changes feed a host follows: appended with each change, read with a `(txid, id)` cursor.

A change is appended in the transaction that makes it (never after), so the feed holds a change
exactly when the change happened. Readers see a row only once every transaction older than it
has ended (migration 0009 explains the rule), so a cursor never passes a row that commits later:
each change is delivered at least once, with `id` as its stable id for the host to dedupe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

#: The kinds of change a host acts on (the `kind` column; CHECK: lower-case words).
CHECKOUT_FINISHED: Final = "checkout_finished"
CHECKOUT_WAITING: Final = "checkout_waiting"
BAG_STATUS: Final = "bag_status"
ACTION_SETTLED: Final = "action_settled"

#: Appends one change; usable alone or as a CTE of a larger statement.
APPEND_SQL: Final = (
    "INSERT INTO checkout_changes (checkout_id, app_order_id, kind, detail) "
    "VALUES (%(checkout_id)s, %(app_order_id)s, %(kind)s, %(detail)s)"
)

_READ_SQL: Final = """
SELECT id, txid::text AS txid, at, checkout_id, app_order_id, kind, detail
FROM checkout_changes
WHERE (txid, id) > (%(txid)s::xid8, %(id)s)
  AND txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY txid, id
LIMIT %(limit)s
"""

#: The cursor before the first change.
START: Final = "0:0"
_MAX_TXID: Final = 2**64 - 1  # xid8
_MAX_ID: Final = 2**63 - 1  # bigint


@dataclass(frozen=True, slots=True)
class Change:
    """One change as the host reads it; `cursor` resumes the feed just after it."""

    id: int
    cursor: str
    at: datetime
    checkout_id: UUID
    app_order_id: str | None
    kind: str
    detail: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "cursor": self.cursor,
            "at": self.at.isoformat(),
            "checkout_id": str(self.checkout_id),
            "app_order_id": self.app_order_id,
            "kind": self.kind,
            "detail": self.detail,
        }


def parse_cursor(cursor: str) -> tuple[str, int]:
    """`"txid:id"` as its two parts; ValueError naming the cursor when it is not one.

    Checked here rather than left to the database, so a caller learns which value was wrong
    (not a cast error) and nothing out of range reaches the query."""
    txid, sep, change_id = cursor.partition(":")
    if (
        not sep
        or not (_is_number(txid) and int(txid) <= _MAX_TXID)
        or not (_is_number(change_id) and int(change_id) <= _MAX_ID)
    ):
        raise ValueError(f"not a changes cursor: {cursor[:40]!r} (expected TXID:ID, e.g. 0:0)")
    return txid, int(change_id)


def _is_number(text: str) -> bool:
    # ASCII only: str.isdigit() also accepts digits PostgreSQL does not read as such.
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def append_params(
    checkout_id: UUID, app_order_id: str | None, kind: str, detail: dict[str, Any] | None
) -> dict[str, Any]:
    """The parameters of `APPEND_SQL`."""
    return {
        "checkout_id": checkout_id,
        "app_order_id": app_order_id,
        "kind": kind,
        "detail": Jsonb(detail) if detail is not None else None,
    }


async def append(
    conn: AsyncConnection[Any],
    checkout_id: UUID,
    app_order_id: str | None,
    kind: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one change on `conn`, inside the caller's transaction."""
    await conn.execute(APPEND_SQL, append_params(checkout_id, app_order_id, kind, detail))


async def read(conn: AsyncConnection[Any], after: str = START, limit: int = 100) -> list[Change]:
    """The changes after `after` that no running transaction can still precede, oldest first."""
    txid, change_id = parse_cursor(after)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_READ_SQL, {"txid": txid, "id": change_id, "limit": limit})
        rows = await cur.fetchall()
    return [
        Change(
            id=row["id"],
            cursor=f"{row['txid']}:{row['id']}",
            at=row["at"],
            checkout_id=row["checkout_id"],
            app_order_id=row["app_order_id"],
            kind=row["kind"],
            detail=row["detail"],
        )
        for row in rows
    ]
