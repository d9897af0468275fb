"""Read-only statements on whichever connection the caller has: a SQLAlchemy engine (the
library, which holds one) or a plain psycopg connection (the read-only CLI queries).

The audit queries and the checkout lookup are written once against `QueryRunner`. The CLI's
runner imports neither SQLAlchemy nor the schema's metadata: they cost `orchestrator status` and
`orchestrator stats` most of a second of CPU at start (tests/cli/test_startup_imports.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from orchestrator.errors import DatabaseUnavailable
from orchestrator.store.db_urls import UrlParts, describe_url, libpq_conninfo, parse_url
from orchestrator.store.schema_head import (
    HAS_VERSION_TABLE_SQL,
    VERSIONS_SQL,
    refuse_unless_head,
)
from orchestrator.store.schema_names import VERSION_TABLE

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["EngineRunner", "PsycopgRunner", "QueryRunner", "as_runner", "connect"]


@runtime_checkable
class QueryRunner(Protocol):
    """Runs one statement (psycopg's `%(name)s` parameters) and returns its rows as dicts."""

    async def rows(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]: ...


class EngineRunner:
    """A `QueryRunner` over a SQLAlchemy engine: each statement autocommitted on a pooled
    connection, as the repository runs its own."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            result = await conn.exec_driver_sql(sql, None if params is None else dict(params))
            return [dict(r) for r in result.mappings().all()] if result.returns_rows else []


class PsycopgRunner:
    """A `QueryRunner` over one psycopg connection in autocommit mode."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self._conn = conn

    async def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        from psycopg.rows import dict_row

        async with self._conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return await cur.fetchall() if cur.description is not None else []


def as_runner(source: QueryRunner | AsyncEngine) -> QueryRunner:
    """The runner itself, or one over a SQLAlchemy engine (what library callers hold)."""
    if isinstance(source, QueryRunner):
        return source
    return EngineRunner(source)


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[PsycopgRunner]:
    """A runner on one autocommit psycopg connection to a schema at this code's head.

    Connects as `store.database.create_engine`'s engines do (application name, connect timeout),
    with JIT off, and refuses the database as `check_schema` does, with the same messages.
    """
    import psycopg

    parts = parse_url(url)
    extra: dict[str, Any] = {}
    if "application_name" not in parts.query:
        extra["application_name"] = "orchestrator"
    if "connect_timeout" not in parts.query:
        extra["connect_timeout"] = 5
    if "options" not in parts.query:
        # Read-only statements over indexes: PostgreSQL's JIT would compile an `--exact` count of
        # a large table (its cost passes `jit_above_cost`) for milliseconds it never wins back.
        extra["options"] = "-c jit=off"
    failures = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
    try:
        conn = await psycopg.AsyncConnection.connect(
            libpq_conninfo(parts), autocommit=True, **extra
        )
    except failures as exc:
        raise _unavailable(exc, parts) from None
    async with conn:
        runner = PsycopgRunner(conn)
        try:
            versions = await _versions(runner)
        except failures as exc:
            raise _unavailable(exc, parts) from None
        refuse_unless_head(versions)
        yield runner


async def _versions(runner: QueryRunner) -> list[str] | None:
    found = await runner.rows(HAS_VERSION_TABLE_SQL, {"t": VERSION_TABLE})
    if found[0]["found"] is None:
        return None
    return [str(r["version_num"]) for r in await runner.rows(VERSIONS_SQL)]


def _unavailable(exc: BaseException, parts: UrlParts) -> DatabaseUnavailable:
    reason = str(exc).strip().splitlines()[0]
    if parts.password:
        reason = reason.replace(parts.password, "***")
    where = describe_url(parts)
    return DatabaseUnavailable(f"cannot connect to the database at {where}: {reason}")
