"""`parse_url` reads a database URL exactly as SQLAlchemy's `make_url` does (its grammar), so
the settings and the SQLAlchemy-free CLI queries accept, refuse and connect alike."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from orchestrator.database_url import parse_url
from orchestrator.store.db_urls import describe_url, libpq_conninfo

URLS = [
    "postgresql+psycopg://",
    "postgresql+psycopg://localhost",
    "postgresql+psycopg://u@h/db",
    "postgresql+psycopg://u:p%40ss%3Aw%2Frd@h:5433/d%20b",
    "postgresql+psycopg://us%20er:pa ss@host.example:1/db?sslmode=require&application_name=x",
    "postgresql+psycopg://u:p@[::1]:5432/db",
    "postgresql+psycopg://u@/db?host=/var/run/postgresql",
    "postgresql+psycopg:///db?host=a&host=b&port=1&port=2",
    "postgresql+psycopg://u:@h/db?options=-c%20statement_timeout%3D5&empty=",
    "postgresql+psycopg://h:/db",
    "postgresql+psycopg://h:5_432/db",
    "postgresql+psycopg://h:99999/db",
    "postgresql://h/db?sslmode=a&sslmode=b&sslmode=c",
    "postgresql+psycopg://h:abc/db",
    "postgresql+psycopg://h:-1/db",
    "://nothing",
    "not a url",
]


@pytest.mark.parametrize("url", URLS)
def test_parse_url_reads_what_sqlalchemy_reads_and_refuses_what_it_refuses(url: str) -> None:
    try:
        expected = make_url(url)
    except (ValueError, ArgumentError):
        with pytest.raises(ValueError):
            parse_url(url)
        return
    parts = parse_url(url)
    assert (
        parts.drivername,
        parts.username,
        parts.password,
        parts.host,
        parts.port,
        parts.database,
        parts.query,
    ) == (
        expected.drivername,
        expected.username,
        expected.password,
        expected.host,
        expected.port,
        expected.database,
        dict(expected.query),
    )
    assert libpq_conninfo(url) == libpq_conninfo(expected)
    assert describe_url(url) == describe_url(expected)
