"""The schema's versions: running the migrations, and refusing a database not at this code's head.

alembic (and mako, pygments) load only when migrating: ~0.5 s per process. Every command that
opens the database checks its version first, so that check reads the scripts without alembic.
"""

from __future__ import annotations

import ast
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.errors import ConfigError, DatabaseUnavailable, SchemaNotMigrated
from orchestrator.store.db_urls import describe_url, normalize_url
from orchestrator.store.schema import TABLE_NAMES, VERSION_TABLE

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

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

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_NO_SCHEMA = "database has no orchestrator schema; run `orchestrator db upgrade`"


def migrations_dir() -> Path:
    """The alembic scripts: inside the installed wheel, or `<repo>/migrations` in a checkout."""
    for candidate in (_PACKAGE_DIR / "_migrations", _PACKAGE_DIR.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise ConfigError(f"orchestrator migrations not found next to {_PACKAGE_DIR}")


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


def _alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


@lru_cache(maxsize=1)
def _script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The revision this code expects the database to be at.

    Read from the scripts' `revision` and `down_revision` assignments rather than through
    alembic: every command that opens the database checks the schema, and loading alembic's
    script machinery for that costs a CLI start ~0.2 s. tests/integration/test_migrations.py
    checks the answer against alembic's own.
    """
    parents: dict[str, tuple[str, ...]] = {}
    for path in sorted((migrations_dir() / "versions").glob("*.py")):
        found = _revision_assignments(path)
        if "revision" in found:
            down = found.get("down_revision")
            parents[found["revision"]] = (down,) if isinstance(down, str) else tuple(down or ())
    children = {parent for downs in parents.values() for parent in downs}
    heads = sorted(set(parents) - children)
    if len(heads) != 1:
        raise ConfigError(f"orchestrator migrations have {len(heads)} heads, expected one")
    return heads[0]


def _revision_assignments(path: Path) -> dict[str, Any]:
    """A migration script's module-level `revision` and `down_revision` literals."""
    found: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target: ast.expr | None = None
        if isinstance(node, ast.AnnAssign):
            target = node.target
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(target, ast.Name) and target.id in _REVISION_NAMES and value is not None:
            found[target.id] = ast.literal_eval(value)
    return found


_REVISION_NAMES = frozenset({"revision", "down_revision"})


# alembic runs env.py through a module-global proxy (`alembic.context`), so two threads of one
# process must not run migrations at once; processes are serialised by env.py's advisory lock.
_alembic_lock = threading.Lock()


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database to `revision` (idempotent; safe from several workers at once)."""
    logger.info("migrating %s to %s", describe_url(normalize_url(url)), revision)
    from alembic import command

    with _alembic_lock:
        command.upgrade(_alembic_config(normalize_url(url)), revision)


def downgrade(url: str, revision: str) -> None:
    """Downgrade the database to `revision` (`base` removes every orchestrator table)."""
    logger.info("downgrading %s to %s", describe_url(normalize_url(url)), revision)
    from alembic import command

    with _alembic_lock:
        command.downgrade(_alembic_config(normalize_url(url)), revision)


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
    if conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": VERSION_TABLE}).scalar() is None:
        return None
    return list(conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


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
    if not versions:
        raise SchemaNotMigrated(_NO_SCHEMA)
    head = head_revision()
    if versions == [head]:
        return
    have = ", ".join(versions)
    if all(_known_revision(v) for v in versions):
        raise SchemaNotMigrated(
            f"database schema is at revision {have}, this orchestrator needs {head}; "
            "run `orchestrator db upgrade`"
        )
    raise SchemaNotMigrated(
        f"database schema is at revision {have}, unknown to this orchestrator (needs {head}); "
        "was it migrated by a newer version?"
    )


def _known_revision(revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return _script_directory().get_revision(revision) is not None
    except CommandError:
        return False
