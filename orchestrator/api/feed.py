"""The changes feed of the front door (docs/changes.md): `Orchestrator.changes` and `follow`.

A mixin rather than plain functions: the methods keep their public signatures and docstrings in
one place, and `Orchestrator` gains them by inheritance. It needs only the open pool and engine.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from orchestrator.errors import InvalidRequest
from orchestrator.store import changes as feed
from orchestrator.store import database
from orchestrator.store.changes import Change

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["MAX_CHANGES_LIMIT", "ChangesFeed", "check_feed_args"]

#: The most changes one read returns.
MAX_CHANGES_LIMIT = 1000


def check_feed_args(after: str, limit: int) -> None:
    """InvalidRequest naming a bad cursor or limit, before any query."""
    try:
        feed.parse_cursor(after)
    except ValueError as exc:
        raise InvalidRequest([("after", str(exc))]) from None
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CHANGES_LIMIT:
        raise InvalidRequest([("limit", f"expected a whole number from 1 to {MAX_CHANGES_LIMIT}")])


class ChangesFeed:
    """`changes` and `follow` for a class that has an open pool and engine (`Orchestrator`)."""

    _pool: AsyncConnectionPool | None

    if TYPE_CHECKING:

        @property
        def engine(self) -> AsyncEngine: ...

    async def changes(self, after: str = feed.START, limit: int = 100) -> list[Change]:
        """The changes after the cursor `after` (oldest first, at most `limit`).

        Each change is delivered at least once: process it, then store its `cursor` and pass
        that back; dedupe by `id` (a change read again after a crash has the same id).
        """
        check_feed_args(after, limit)
        assert self._pool is not None, "call open() first"
        async with self._pool.connection() as conn:
            return await feed.read(conn, after, limit)

    async def follow(
        self, after: str = feed.START, *, limit: int = 100, poll_seconds: float = 5.0
    ) -> AsyncGenerator[Change, None]:
        """Every change after `after`, as it comes, for as long as the caller iterates.

        A LISTEN on its own connection wakes it when a change commits; it also polls every
        `poll_seconds` (a NOTIFY can be missed across a reconnect). At least once, like
        `changes`: store each change's `cursor` once processed, resume from it after a restart.
        """
        check_feed_args(after, limit)
        if not poll_seconds > 0:
            raise InvalidRequest([("poll_seconds", "expected a number of seconds above 0")])

        async def read_after(cursor: str) -> list[Change]:
            return await self.changes(cursor, limit)

        async for change in feed.follow(
            read_after, self._listener, after, poll_seconds=poll_seconds
        ):
            yield change

    async def _listener(self) -> psycopg.AsyncConnection[Any]:
        """A connection of its own for LISTEN: a pooled one would go back to the pool."""
        return await psycopg.AsyncConnection.connect(
            database.libpq_conninfo(self.engine.url),
            autocommit=True,
            application_name="orchestrator-follow",
            connect_timeout=5,
        )
