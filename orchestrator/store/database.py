"""Getting a database to talk to: URL resolution, embedded PostgreSQL, engines, migrations.

Everything here runs at start-up, not per checkout: it decides which PostgreSQL to use (the
configured one, or an embedded one for a developer's machine), brings its schema to the version
this code expects, and refuses to start against a schema it does not know. The engines and the
database's errors are here; URLs are store/db_urls.py's, the embedded server store/embedded.py's
and the migrations store/schema_versions.py's, all importable from here.
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg_pool
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from orchestrator.errors import DatabaseUnavailable
from orchestrator.store.db_urls import describe_url, libpq_conninfo, normalize_url
from orchestrator.store.embedded import DatabaseLocation, EmbeddedPostgres, resolve_database_url
from orchestrator.store.schema_versions import (
    alembic_options,
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    highest_violet_order_id,
    include_name,
    include_object,
    migrate,
    migrations_dir,
    schema_drift,
)

__all__ = [
    "DatabaseLocation",
    "EmbeddedPostgres",
    "alembic_options",
    "check_schema",
    "create_engine",
    "current_revision",
    "describe_url",
    "downgrade",
    "error_reason",
    "head_revision",
    "highest_violet_order_id",
    "include_name",
    "include_object",
    "is_database_error",
    "libpq_conninfo",
    "migrate",
    "migrations_dir",
    "normalize_url",
    "resolve_database_url",
    "schema_drift",
    "session_options",
]


def session_options(
    url: str | URL, *, lock_timeout: float | None, statement_timeout: float | None
) -> dict[str, str]:
    """libpq `options` setting PostgreSQL's lock and statement timeouts (seconds) at connect.

    Set at connect time, not per statement: no round trip on the hot path. An `options` value
    already in the URL is kept, ours appended (the connection argument would replace it).
    """
    parts = []
    query = make_url(url).query if isinstance(url, str) else url.query
    given = query.get("options")
    if isinstance(given, str) and given:
        parts.append(given)
    for name, seconds in (("lock_timeout", lock_timeout), ("statement_timeout", statement_timeout)):
        if seconds is not None:
            parts.append(f"-c {name}={max(1, round(seconds * 1000))}")
    return {"options": " ".join(parts)} if parts else {}


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    lock_timeout: float | None = None,
    statement_timeout: float | None = None,
) -> AsyncEngine:
    """An async engine (psycopg 3) sized for one worker process.

    No pre-ping: it would cost a round trip on every step, and a dropped connection invalidates
    the whole pool on first use anyway. Connections are recycled so a failover is picked up.
    `lock_timeout` and `statement_timeout` (seconds) bound every statement's waits on its
    connections (None: the server's defaults).
    """
    normalized = normalize_url(url)
    connect_args: dict[str, Any] = {}
    query = make_url(normalized).query
    if "application_name" not in query:
        connect_args["application_name"] = "orchestrator"
    if "connect_timeout" not in query:
        connect_args["connect_timeout"] = 5
    connect_args.update(
        session_options(normalized, lock_timeout=lock_timeout, statement_timeout=statement_timeout)
    )
    return create_async_engine(
        normalized,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=30,
        pool_recycle=1800,
        connect_args=connect_args,
    )


# The step writes go through psycopg_pool directly, so its errors count as the database's too.
_DATABASE_ERRORS = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    DatabaseUnavailable,
    OSError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
)


def is_database_error(exc: BaseException) -> bool:
    """True for the database failing us (unreachable, dropped, a lock or statement timeout), as
    opposed to refusing what we sent: the work is kept and tried again later."""
    if isinstance(exc, sa.exc.DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(exc, sa.exc.OperationalError)
    return isinstance(exc, _DATABASE_ERRORS)


def error_reason(exc: BaseException) -> str:
    """The first line of the driver's message (statement parameters are never echoed)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
