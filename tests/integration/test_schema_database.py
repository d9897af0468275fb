"""Database bootstrap: URL resolution, the embedded server, engines."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from orchestrator import states
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.store import embedded
from orchestrator.store.database import (
    EmbeddedPostgres,
    create_engine,
    current_revision,
    describe_url,
    head_revision,
    migrate,
    normalize_url,
    resolve_database_url,
)


def _postgres_running_in(pgdata: Path) -> bool:
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in " ".join(proc.info["cmdline"] or []):
            return True
    return False


def test_configured_url_wins(tmp_path: Path) -> None:
    settings = Settings(database_url="postgresql://u:pw@db.example:6543/orders", data_dir=tmp_path)
    assert resolve_database_url(settings) == "postgresql+psycopg://u:pw@db.example:6543/orders"
    assert not (tmp_path / "pgdata").exists()


def test_normalize_url() -> None:
    assert normalize_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalize_url("postgresql+psycopg://u@h/d") == "postgresql+psycopg://u@h/d"
    with pytest.raises(ConfigError, match="postgresql"):
        normalize_url("mysql://u@h/d")


def test_describe_url_never_shows_the_password() -> None:
    assert describe_url("postgresql+psycopg://u:hunter2@db:6543/orders") == "db:6543/orders"
    assert describe_url("postgresql+psycopg://postgres@/postgres?host=/tmp/s") == (
        "/tmp/s:5432/postgres"
    )


def test_embedded_server_needs_pgserver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pgserver.postgres_server", None)  # import fails
    with pytest.raises(ConfigError) as caught:
        resolve_database_url(Settings(data_dir=tmp_path))
    message = str(caught.value)
    assert "pip install 'orchestrator[embedded]'" in message
    assert "ORCHESTRATOR_DATABASE_URL" in message


@pytest.mark.slow
async def test_embedded_server_under_the_data_dir(tmp_path: Path) -> None:
    """No URL configured: an embedded server under data_dir/pgdata; its data outlives it."""
    pgdata = (tmp_path / "pgdata").resolve()
    url = resolve_database_url(Settings(data_dir=tmp_path))
    try:
        assert _postgres_running_in(pgdata)
        assert resolve_database_url(Settings(data_dir=tmp_path)) == url  # one server per dir
        migrate(url)
    finally:
        embedded._embedded.pop(pgdata).stop()
    assert not _postgres_running_in(pgdata)

    with EmbeddedPostgres(pgdata) as server:  # started again on the same data
        assert current_revision(server.url) == head_revision()
        engine = create_engine(server.url)
        try:
            async with engine.connect() as conn:
                count = await conn.scalar(
                    sa.text("SELECT count(*) FROM checkout_state_transitions")
                )
            assert count == len({(f, t) for f, t, _ in states.legal_moves()})
        finally:
            await engine.dispose()
    assert not _postgres_running_in(pgdata)


def test_embedded_url_needs_a_running_server(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = EmbeddedPostgres(tmp_path / "pgdata").url


async def test_create_engine_accepts_plain_postgresql_urls(database_url: str) -> None:
    plain = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    engine = create_engine(plain, pool_size=2)
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        assert engine.pool.size() == 2  # type: ignore[attr-defined]
        async with engine.connect() as conn:
            name = await conn.scalar(sa.text("SELECT current_setting('application_name')"))
        assert name == "orchestrator"
    finally:
        await engine.dispose()
