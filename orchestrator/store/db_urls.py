"""PostgreSQL URLs as each client needs them: SQLAlchemy's, libpq's, and one for messages."""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL, make_url

from orchestrator.errors import ConfigError

__all__ = ["describe_url", "libpq_conninfo", "normalize_url"]


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
