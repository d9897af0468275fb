"""The schema's versions: running the migrations, and refusing a database not at this code's head.

alembic (and mako, pygments) load only when migrating: ~0.5 s per process. Every command that
opens the database checks its version first, so that check reads the scripts without alembic
(store/schema_head.py, which the SQLAlchemy-free read path shares).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.errors import DatabaseUnavailable
from orchestrator.store.db_urls import describe_url, normalize_url
from orchestrator.store.schema import TABLE_NAMES
from orchestrator.store.schema_head import (
    HAS_VERSION_TABLE_SQL,
    VERSIONS_SQL,
    alembic_config,
    head_revision,
    migrations_dir,
    refuse_unless_head,
)
from orchestrator.store.schema_names import VERSION_TABLE

__all__ = [
    "alembic_options",
    "check_schema",
    "current_revision",
    "downgrade",
    "head_revision",
    "highest_violet_order_id",
    "include_name",
    "include_object",
    "migrate",
    "migrations_dir",
    "schema_drift",
]

logger = logging.getLogger(__name__)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Reflect only our own tables: the host application's are none of our business."""
    if type_ == "table":
        return name in TABLE_NAMES
    return True


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Never report (or drop) a table the project does not own."""
    if type_ == "table":
        return name in TABLE_NAMES
    return True


def alembic_options() -> dict[str, Any]:
    """The `context.configure` options shared by env.py and `schema_drift`."""
    return {
        "version_table": VERSION_TABLE,
        "include_name": include_name,
        "include_object": include_object,
        "compare_type": True,
        "compare_server_default": True,
    }


# alembic runs env.py through a module-global proxy (`alembic.context`), so two threads of one
# process must not run migrations at once; processes are serialised by env.py's advisory lock.
_alembic_lock = threading.Lock()


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database to `revision` (idempotent; safe from several workers at once)."""
    logger.info("migrating %s to %s", describe_url(normalize_url(url)), revision)
    from alembic import command

    with _alembic_lock:
        command.upgrade(alembic_config(normalize_url(url)), revision)


def downgrade(url: str, revision: str) -> None:
    """Downgrade the database to `revision` (`base` removes every orchestrator table)."""
    logger.info("downgrading %s to %s", describe_url(normalize_url(url)), revision)
    from alembic import command

    with _alembic_lock:
        command.downgrade(alembic_config(normalize_url(url)), revision)


def _sync_engine(url: str) -> sa.Engine:
    return sa.create_engine(normalize_url(url), poolclass=sa.NullPool)


def current_revision(url: str) -> str | None:
    """The revision the database is at; None when it has no orchestrator schema."""
    from alembic.runtime.migration import MigrationContext

    engine = _sync_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()


def highest_violet_order_id(url: str) -> int | None:
    """The largest Violet cart id any checkout holds (None: none yet)."""
    engine = _sync_engine(url)
    try:
        with engine.connect() as conn:
            found: int | None = conn.execute(
                sa.text("SELECT max(violet_order_id) FROM checkouts")
            ).scalar_one()
            return found
    finally:
        engine.dispose()


def schema_drift(url: str) -> list[Any]:
    """What `alembic check` would report: differences between schema.py and the database."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from orchestrator.store.schema import metadata

    engine = _sync_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts=alembic_options())
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def _versions(conn: Connection) -> list[str] | None:
    found = conn.exec_driver_sql(HAS_VERSION_TABLE_SQL, {"t": VERSION_TABLE}).scalar()
    if found is None:
        return None
    return list(conn.exec_driver_sql(VERSIONS_SQL).scalars())


async def check_schema(engine: AsyncEngine) -> None:
    """Refuse to run against a database whose schema is missing or not at this code's head."""
    try:
        async with engine.connect() as conn:
            versions = await conn.run_sync(_versions)
    except (sa.exc.OperationalError, sa.exc.InterfaceError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if engine.url.password:
            reason = reason.replace(str(engine.url.password), "***")
        where = describe_url(engine.url)
        raise DatabaseUnavailable(f"cannot connect to the database at {where}: {reason}") from None
    refuse_unless_head(versions)
