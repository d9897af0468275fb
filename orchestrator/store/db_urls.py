"""PostgreSQL URLs as each client needs them: SQLAlchemy's, libpq's, and one for messages.

A URL given as a string is parsed without SQLAlchemy (`orchestrator.database_url`): the
read-only CLI queries use these and start without it (~0.35 s of a CLI start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.database_url import UrlParts, parse_url
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.engine import URL

__all__ = ["UrlParts", "describe_url", "libpq_conninfo", "normalize_url", "parse_url"]


class _Url(Protocol):
    """What is read of a URL: `UrlParts` and SQLAlchemy's `URL` both have it."""

    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def database(self) -> str | None: ...
    @property
    def query(self) -> Mapping[str, str | tuple[str, ...]]: ...


def _parts(url: str | _Url) -> _Url:
    return parse_url(url) if isinstance(url, str) else url


def normalize_url(url: str | URL) -> str:
    """Any PostgreSQL URL as the `postgresql+psycopg://` form SQLAlchemy needs (psycopg 3)."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    for prefix in ("postgresql://", "postgres://"):
        if text.startswith(prefix):
            return "postgresql+psycopg://" + text[len(prefix) :]
    if not text.startswith("postgresql+psycopg://"):
        raise ConfigError("database URL must be a postgresql+psycopg:// (or postgresql://) URL")
    return text


def libpq_conninfo(url: str | URL | UrlParts) -> str:
    """A URL as a libpq connection string (key=value, every value quoted).

    Not the URL rendered back: SQLAlchemy escapes only ``:@/`` in a user name or password, and
    libpq refuses a URL holding a space, which a quoted role name may well contain.
    """
    from psycopg.conninfo import make_conninfo

    parsed = _parts(url)
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


def describe_url(url: str | URL | UrlParts) -> str:
    """host:port/database of a URL, for messages: never the password."""
    parsed = _parts(url)
    host = parsed.host or parsed.query.get("host") or "localhost"
    if isinstance(host, tuple):
        host = ",".join(host)
    return f"{host}:{parsed.port or 5432}/{parsed.database or ''}"
