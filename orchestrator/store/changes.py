"""The changes feed a host follows: appended with each change, read with a `(txid, id)` cursor.

A change is appended in the transaction that makes it (never after), so the feed holds a change
exactly when the change happened. Readers see a row only once every transaction older than it
has ended (migration 0009 explains the rule), so a cursor never passes a row that commits later:
each change is delivered at least once, with `id` as its stable id for the host to dedupe.
Transaction ids are server-wide, so a transaction running in any database of the server holds
back the changes newer than it for as long as it runs: a change shows within the longest running
transaction, and a follower polls again after a wake-up that found nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from orchestrator import sensitive

log = logging.getLogger(__name__)

#: The channel a transaction that appends a change notifies (migration 0009's row trigger).
CHANNEL: Final = "orchestrator_changes"

#: The kinds of change a host acts on (the `kind` column; CHECK: lower-case words).
CHECKOUT_FINISHED: Final = "checkout_finished"
CHECKOUT_WAITING: Final = "checkout_waiting"
#: An operator's retry reopened a failed checkout: its `checkout_finished` (failed) no longer holds.
CHECKOUT_REOPENED: Final = "checkout_reopened"
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
        """Stable field names, the time in ISO-8601 UTC (as every JSON document we print)."""
        return {
            "id": self.id,
            "cursor": self.cursor,
            "at": self.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
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
        "detail": Jsonb(storable(detail)) if detail is not None else None,
    }


def storable(detail: dict[str, Any]) -> dict[str, Any]:
    """`detail` with whatever the secret specification finds redacted. A change's detail
    carries Violet's ids and a webhook's event id, text nobody checked: one that happens to
    look like a card (a Luhn-valid run of 13+ digits in a hex id) would make the tripwire refuse
    the write, and with it the outcome the change belongs to."""
    if sensitive.find_in_json(detail) is None:
        return detail
    redacted: dict[str, Any] = sensitive.redact_json(detail)
    return redacted


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


#: Reads after a wake-up: the first at once, then 0.05 s apart, doubling up to 1.6 s (3.15 s
#: in all: longer than most transactions run), then every `poll_seconds` again.
_FIRST_RETRY: Final = 0.05
_LAST_RETRY: Final = 1.6


async def follow(
    read_after: Callable[[str], Awaitable[list[Change]]],
    connect: Callable[[], Awaitable[AsyncConnection[Any]]],
    after: str = START,
    *,
    poll_seconds: float = 5.0,
) -> AsyncIterator[Change]:
    """Every change after `after` as it comes, for as long as the caller iterates.

    `read_after(cursor)` reads a page of the feed; `connect()` opens the dedicated connection
    that LISTENs. A NOTIFY wakes the follower, and it reads again a few times shortly after:
    the change that notified may still be held back by an older transaction, which ends
    without notifying anyone. Without any NOTIFY it polls every `poll_seconds` (one can be
    missed across a reconnect, and a lost listener falls back to polling until it is back).
    """
    parse_cursor(after)
    cursor = after
    listener: AsyncConnection[Any] | None = None
    # The next short wait after a wake-up (None: poll_seconds). The start and a reconnect are
    # wake-ups too: a change that notified before the LISTEN may still be held back.
    retry: float | None = _FIRST_RETRY
    try:
        while True:
            if listener is None:
                listener = await _listen(connect)
                retry = _FIRST_RETRY if listener is not None else retry
            found = await read_after(cursor)
            for change in found:
                yield change
                cursor = change.cursor
            if found:
                retry = _FIRST_RETRY  # a full page, or more held back: read again soon
                continue
            wait = poll_seconds if retry is None else min(retry, poll_seconds)
            retry = None if retry is None or retry >= _LAST_RETRY else retry * 2
            if listener is None:
                await asyncio.sleep(wait)
                continue
            try:
                if await _notified(listener, wait):
                    retry = _FIRST_RETRY
            except psycopg.Error as exc:
                log.warning("changes: the LISTEN connection failed (%s); reconnecting", exc)
                await _close(listener)
                listener = None
    finally:
        if listener is not None:
            await _close(listener)


async def _listen(
    connect: Callable[[], Awaitable[AsyncConnection[Any]]],
) -> AsyncConnection[Any] | None:
    """A connection LISTENing on the channel, or None (polling goes on) when none opens.

    LISTEN comes before the next read, so a change committed after that read notifies it."""
    try:
        conn = await connect()
    except psycopg.Error as exc:
        log.warning("changes: cannot LISTEN (%s); polling instead", exc)
        return None
    try:
        await conn.execute(f"LISTEN {CHANNEL}")
    except psycopg.Error as exc:
        log.warning("changes: cannot LISTEN (%s); polling instead", exc)
        await _close(conn)
        return None
    return conn


async def _notified(listener: AsyncConnection[Any], wait: float) -> bool:
    """Whether a NOTIFY arrived within `wait` seconds (every one already queued is taken)."""
    woke = False
    async for _ in listener.notifies(timeout=wait, stop_after=1):
        woke = True
    return woke


async def _close(conn: AsyncConnection[Any]) -> None:
    with contextlib.suppress(psycopg.Error):
        await conn.close()
