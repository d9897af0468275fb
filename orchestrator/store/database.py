"""Getting a database to talk to: URL resolution, embedded PostgreSQL, engines, migrations.

Everything here runs at start-up, not per checkout: it decides which PostgreSQL to use (the
configured one, or an embedded one for a developer's machine), brings its schema to the version
this code expects, and refuses to start against a schema it does not know.
"""

from __future__ import annotations

import ast
import logging
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
import psycopg_pool
import sqlalchemy as sa
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from orchestrator.errors import ConfigError, DatabaseUnavailable, SchemaNotMigrated
from orchestrator.store.schema import TABLE_NAMES, VERSION_TABLE

if TYPE_CHECKING:  # alembic (and mako, pygments) load only when migrating: ~0.5 s per process
    from alembic.config import Config
    from alembic.script import ScriptDirectory

logger = logging.getLogger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_EMBEDDED_HINT = (
    "no database configured and the embedded PostgreSQL is not installed: "
    "`pip install 'orchestrator[embedded]'` or set ORCHESTRATOR_DATABASE_URL"
)
_NO_SCHEMA = "database has no orchestrator schema; run `orchestrator db upgrade`"


def normalize_url(url: str | URL) -> str:
    """Any PostgreSQL URL as the `postgresql+psycopg://` form SQLAlchemy needs (psycopg 3)."""
    text = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    for prefix in ("postgresql://", "postgres://"):
        if text.startswith(prefix):
            return "postgresql+psycopg://" + text[len(prefix) :]
    if not text.startswith("postgresql+psycopg://"):
        raise ConfigError("database URL must be a postgresql+psycopg:// (or postgresql://) URL")
    return text


def libpq_conninfo(url: str | URL) -> str:
    """A SQLAlchemy URL as a libpq connection string (key=value, every value quoted).

    Not the URL rendered back: SQLAlchemy escapes only ``:@/`` in a user name or password, and
    libpq refuses a URL holding a space, which a quoted role name may well contain.
    """
    parsed = make_url(url) if isinstance(url, str) else url
    params: dict[str, Any] = {
        key: ",".join(value) if isinstance(value, tuple) else value
        for key, value in parsed.query.items()
    }
    for key, value in (
        ("host", parsed.host),
        ("port", parsed.port),
        ("user", parsed.username),
        ("password", parsed.password),
        ("dbname", parsed.database),
    ):
        if value is not None:
            params[key] = value
    return make_conninfo(**params)


def describe_url(url: str | URL) -> str:
    """host:port/database of a URL, for messages: never the password."""
    parsed = make_url(url) if isinstance(url, str) else url
    host = parsed.host or parsed.query.get("host") or "localhost"
    if isinstance(host, tuple):
        host = ",".join(host)
    return f"{host}:{parsed.port or 5432}/{parsed.database or ''}"


# -- embedded PostgreSQL --------------------------------------------------------------------------


class EmbeddedPostgres:
    """A private PostgreSQL server (pgserver) in a data directory, for machines without one.

    It listens on a Unix socket only. `stop()` (or leaving the `with` block) stops it unless
    another process still uses the same data directory; pgserver also stops it at process exit.
    """

    def __init__(self, pgdata: Path, *, delete_on_stop: bool = False) -> None:
        self.pgdata = Path(pgdata)
        self.delete_on_stop = delete_on_stop
        self._server: Any = None

    @property
    def url(self) -> str:
        """A postgresql+psycopg:// URL to the server's `postgres` database."""
        if self._server is None:
            raise RuntimeError("embedded PostgreSQL is not running; call start() first")
        return normalize_url(str(self._server.get_uri()))

    def start(self) -> str:
        if self._server is None:
            try:
                with warnings.catch_warnings():  # pgserver asks for a runtime dir at import;
                    # without XDG_RUNTIME_DIR it falls back to /tmp, which is fine here
                    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
                    from pgserver.postgres_server import get_server
            except ImportError:
                raise ConfigError(_EMBEDDED_HINT) from None
            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            logger.info("starting embedded PostgreSQL in %s", self.pgdata)
            mode = "delete" if self.delete_on_stop else "stop"
            self._server = get_server(self.pgdata, cleanup_mode=mode)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.cleanup()

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_embedded: dict[Path, EmbeddedPostgres] = {}


class DatabaseLocation(Protocol):
    """Where the database is, as the caller's settings say (`config.Settings` is one): the store
    is handed its settings, it never reads the environment."""

    @property
    def database_url(self) -> str | None: ...

    @property
    def data_dir(self) -> Path: ...


def resolve_database_url(location: DatabaseLocation) -> str:
    """The configured database URL, or the embedded server under `data_dir/pgdata`.

    An embedded server started here runs until the process exits.
    """
    if location.database_url:
        return normalize_url(location.database_url)
    pgdata = (location.data_dir / "pgdata").expanduser().resolve()
    server = _embedded.get(pgdata)
    if server is None:
        server = _embedded[pgdata] = EmbeddedPostgres(pgdata)
    return server.start()


# -- engines --------------------------------------------------------------------------------------


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


# -- migrations -----------------------------------------------------------------------------------


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
