"""The embedded PostgreSQL (pgserver) a developer's machine runs when no database is configured."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from orchestrator.errors import ConfigError
from orchestrator.store.db_urls import normalize_url

__all__ = ["DatabaseLocation", "EmbeddedPostgres", "resolve_database_url"]

logger = logging.getLogger(__name__)

_EMBEDDED_HINT = (
    "no database configured and the embedded PostgreSQL is not installed: "
    "`pip install 'orchestrator[embedded]'` or set ORCHESTRATOR_DATABASE_URL"
)


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
