"""A database URL's parts, read as SQLAlchemy's `make_url` reads them but without SQLAlchemy.

The settings validate the configured URL and the read-only CLI queries connect with it at every
start; importing SQLAlchemy for that would cost each ~0.35 s of CPU. The grammar is
SQLAlchemy's own (`sqlalchemy.engine.url._parse_url`), so both read any URL alike
(tests/unit/test_database_url.py compares them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

__all__ = ["UrlParts", "parse_url"]

# SQLAlchemy's own URL grammar (sqlalchemy.engine.url._parse_url), so both read a URL alike.
_URL_RE = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)


@dataclass(frozen=True, slots=True)
class UrlParts:
    """A database URL's parts, as SQLAlchemy's `URL` holds them (a repeated query key: a tuple)."""

    drivername: str
    username: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: dict[str, str | tuple[str, ...]] = field(default_factory=dict)


def parse_url(url: str) -> UrlParts:
    """A URL's parts; ValueError when it is not one (what SQLAlchemy's `make_url` refuses)."""
    found = _URL_RE.match(url)
    if found is None:
        raise ValueError("Could not parse SQLAlchemy URL from given URL string")
    parts = found.groupdict()
    query: dict[str, str | tuple[str, ...]] = {}
    for key, value in parse_qsl(parts["query"] or ""):
        have = query.get(key)
        query[key] = value if have is None else (*_as_tuple(have), value)
    username, password, database = (
        None if parts[name] is None else unquote(parts[name])
        for name in ("username", "password", "database")
    )
    return UrlParts(
        drivername=parts["name"],
        username=username,
        password=password,
        host=parts["ipv4host"] or parts["ipv6host"],
        port=None if parts["port"] is None else int(parts["port"]),  # "h:/db" is refused too
        database=database,
        query=query,
    )


def _as_tuple(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else (value,)
