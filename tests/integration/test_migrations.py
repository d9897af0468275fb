"""Migrations replay up and down cleanly, match schema.py, and leave a host's tables alone."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from orchestrator import states
from orchestrator.errors import DatabaseUnavailable, SchemaNotMigrated
from orchestrator.store import schema
from orchestrator.store.database import (
    check_schema,
    create_engine,
    current_revision,
    downgrade,
    head_revision,
    migrate,
    migrations_dir,
    schema_drift,
)
from tests.fixtures.db import libpq_url

REPO = Path(__file__).resolve().parents[2]
OUR_TABLES = {"checkouts", "checkout_events", "checkout_state_transitions"}
OUR_TABLES |= {"violet_throttle", "webhook_inbox", "checkout_bags", "checkout_bag_transitions"}
OUR_TABLES |= {"bag_actions", "checkout_changes", "audit_retention"}

HEAD = "0019"  # the newest revision: bump with every migration


def _tables(url: str) -> set[str]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}


def _functions(url: str) -> set[str]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
        )
        return {r[0] for r in rows}


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    assert current_revision(empty_database_url) is None

    migrate(empty_database_url)
    assert current_revision(empty_database_url) == head_revision() == HEAD
    assert _tables(empty_database_url) == OUR_TABLES | {schema.VERSION_TABLE}
    assert {"orchestrator_secret_in_json", "orchestrator_guard_transition"} <= _functions(
        empty_database_url
    )

    downgrade(empty_database_url, "base")
    assert current_revision(empty_database_url) is None
    assert _tables(empty_database_url) == {schema.VERSION_TABLE}  # alembic keeps its own table
    assert not any(name.startswith("orchestrator_") for name in _functions(empty_database_url))

    migrate(empty_database_url)
    assert current_revision(empty_database_url) == HEAD
    assert schema_drift(empty_database_url) == []


def _checkout_steps(url: str) -> list[tuple[object, ...]]:
    """What the catalog says of `checkout_steps`: columns, constraints, triggers, tripwire."""
    with psycopg.connect(libpq_url(url)) as conn:
        return [
            *conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod), attnotnull, "
                "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
                "LEFT JOIN pg_attrdef d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum) "
                "WHERE attrelid = 'checkout_steps'::regclass AND attnum > 0 ORDER BY attnum"
            ),
            *conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'checkout_steps'::regclass ORDER BY conname"
            ),
            *conn.execute(
                "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                "WHERE tgrelid = 'checkout_steps'::regclass ORDER BY tgname"
            ),
            *conn.execute(
                "SELECT pg_get_functiondef('orchestrator_tripwire_checkout_steps'::regproc)"
            ),
        ]


def test_dropped_step_checkpoints_come_back_as_they_were(empty_database_url: str) -> None:
    """Revision 0010 drops `checkout_steps`; its downgrade recreates what 0009 had, empty."""
    migrate(empty_database_url, "0009")
    before = _checkout_steps(empty_database_url)
    assert len(before) == 8 + 2 + 2 + 1  # 8 columns, key and check, guard and tripwire, function

    migrate(empty_database_url, "0010")
    assert "checkout_steps" not in _tables(empty_database_url)
    assert "orchestrator_tripwire_checkout_steps" not in _functions(empty_database_url)

    downgrade(empty_database_url, "0009")
    assert _checkout_steps(empty_database_url) == before


def test_upgrade_is_idempotent(database_url: str) -> None:
    migrate(database_url)
    assert current_revision(database_url) == head_revision()


def test_metadata_matches_the_migrations(database_url: str) -> None:
    assert schema_drift(database_url) == []


def test_drift_is_detected(database_url: str) -> None:
    """The no-drift assertions above mean something: a changed database is reported."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("DROP INDEX ix_checkouts_created_at")
        conn.execute("ALTER TABLE violet_throttle ADD COLUMN extra integer")
    diffs = [str(diff) for diff in schema_drift(database_url)]
    assert any("ix_checkouts_created_at" in d for d in diffs), diffs
    assert any("extra" in d for d in diffs), diffs


def test_constraint_and_index_names_match_metadata(database_url: str) -> None:
    """alembic does not compare CHECK constraints; their stable names are checked here."""
    expected = {
        (table.name, str(c.name))
        for table in schema.metadata.tables.values()
        for c in table.constraints
    } | {
        (table.name, str(i.name))
        for table in schema.metadata.tables.values()
        for i in table.indexes
    }
    with psycopg.connect(libpq_url(database_url)) as conn:
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, conname FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> %s",
            (schema.VERSION_TABLE,),
        ).fetchall()
        indexes = conn.execute(
            "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename <> %s",
            (schema.VERSION_TABLE,),
        ).fetchall()
    # Primary keys and unique constraints are also indexes of the same name.
    assert {*constraints, *indexes} == expected


def test_the_due_index_holds_open_checkouts_only(database_url: str) -> None:
    """alembic does not compare index predicates either. Every reader of the due index asks for
    open rows, and with a predicate that says so the planner reads it alone, not ANDed with the
    open rows' index, whose entries are every open checkout (migration 0019)."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute("SELECT pg_get_indexdef('ix_checkouts_due'::regclass)").fetchone()
    assert row is not None
    definition = row[0]
    assert "next_attempt_at IS NOT NULL" in definition, definition
    for state in states.TERMINAL_STATES:
        assert f"'{state}'" in definition, definition


def test_version_table_is_our_own(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        assert conn.execute("SELECT version_num FROM orchestrator_alembic_version").fetchall() == [
            (HEAD,)
        ]
        assert conn.execute("SELECT to_regclass('alembic_version')").fetchone() == (None,)


def test_host_tables_are_left_alone(empty_database_url: str) -> None:
    """The schema can live in a host application's database, beside the host's own alembic."""
    with psycopg.connect(libpq_url(empty_database_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE host_orders (id serial PRIMARY KEY, note text)")
        conn.execute("CREATE INDEX ix_host_orders_note ON host_orders (note)")
        conn.execute("INSERT INTO host_orders (note) VALUES ('keep me')")
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('host_rev_1')")

    migrate(empty_database_url)
    assert schema_drift(empty_database_url) == []  # host tables are not reported (nor dropped)
    downgrade(empty_database_url, "base")

    with psycopg.connect(libpq_url(empty_database_url)) as conn:
        assert conn.execute("SELECT note FROM host_orders").fetchall() == [("keep me",)]
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("host_rev_1",)
        ]
        indexes = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'host_orders'")
        assert {r[0] for r in indexes} == {"host_orders_pkey", "ix_host_orders_note"}


def test_concurrent_migrations_take_turns(empty_database_url: str) -> None:
    """Workers starting at once all succeed: env.py's advisory lock makes them take turns."""
    code = "import sys; from orchestrator.store import migrate; migrate(sys.argv[1])"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, empty_database_url],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    errors = [worker.communicate(timeout=120)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], errors
    assert current_revision(empty_database_url) == HEAD


def test_threads_of_one_process_may_migrate_together(database_url: str) -> None:
    """alembic's global proxy is not thread-safe; migrate() serialises threads itself."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        for future in [pool.submit(migrate, database_url) for _ in range(3)]:
            future.result()
    assert current_revision(database_url) == HEAD


def test_migrations_dir_is_the_checkout_one() -> None:
    assert migrations_dir() == REPO / "migrations"


def _alembic(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_alembic_command_line(empty_database_url: str) -> None:
    """`alembic upgrade head` / `alembic check` from the repo root: URL from the environment,
    or from `-x url=...`, which wins over it."""
    _alembic("upgrade", "head", env={**os.environ, "ORCHESTRATOR_DATABASE_URL": empty_database_url})
    assert current_revision(empty_database_url) == HEAD

    unreachable = "postgresql://nobody@127.0.0.1:1/nowhere"
    env = {**os.environ, "ORCHESTRATOR_DATABASE_URL": unreachable}
    output = _alembic("-x", f"url={empty_database_url}", "check", env=env)
    assert "No new upgrade operations detected" in output


def test_offline_sql_has_the_guards() -> None:
    """`alembic upgrade head --sql` produces a script a DBA can review and apply."""
    script = _alembic("-x", "url=postgresql://x@localhost/x", "upgrade", "head", "--sql")
    for needle in (
        "CREATE TABLE checkouts",
        "CREATE TRIGGER checkout_events_append_only",
        "CREATE TRIGGER checkout_state_transitions_fixed",
        "CREATE TRIGGER checkouts_keep_finished",
        "INSERT INTO checkout_state_transitions",
        "INSERT INTO orchestrator_alembic_version",
    ):
        assert needle in script


async def test_check_schema_passes_at_head(database_url: str) -> None:
    """The migrated test database is at this code's head, and check_schema lets it run."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            versions = (
                await conn.execute(sa.text("SELECT version_num FROM orchestrator_alembic_version"))
            ).scalars()
            assert list(versions) == [head_revision()]
        assert await check_schema(engine) is None
    finally:
        await engine.dispose()


async def test_check_schema_refuses_an_empty_database(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    try:
        with pytest.raises(SchemaNotMigrated, match="run `orchestrator db upgrade`"):
            await check_schema(engine)
    finally:
        await engine.dispose()


async def test_check_schema_refuses_a_downgraded_database(database_url: str) -> None:
    downgrade(database_url, "base")
    engine = create_engine(database_url)
    try:
        with pytest.raises(SchemaNotMigrated, match="no orchestrator schema"):
            await check_schema(engine)
    finally:
        await engine.dispose()


async def test_check_schema_refuses_an_unknown_revision(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("UPDATE orchestrator_alembic_version SET version_num = '9999'")
    engine = create_engine(database_url)
    try:
        with pytest.raises(SchemaNotMigrated, match="9999, unknown to this orchestrator"):
            await check_schema(engine)
    finally:
        await engine.dispose()


async def test_check_schema_unreachable_names_host_not_password() -> None:
    engine = create_engine("postgresql+psycopg://someone:hunter2@127.0.0.1:1/orders")
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            await check_schema(engine)
    finally:
        await engine.dispose()
    message = str(caught.value)
    assert "127.0.0.1:1/orders" in message
    assert "hunter2" not in message


def test_sync_engine_sees_seeded_graph(database_url: str) -> None:
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(schema.checkout_state_transitions)
            )
            assert count.scalar() == 33 + 7 + 1  # 0011: retry edges, need_payment again
    finally:
        engine.dispose()


def test_each_revision_downgrades_to_the_one_before(empty_database_url: str) -> None:
    """Step down one revision and up again, so each downgrade() really works."""
    migrate(empty_database_url)
    downgrade(empty_database_url, "0001")
    assert current_revision(empty_database_url) == "0001"
    migrate(empty_database_url)
    assert current_revision(empty_database_url) == HEAD
    assert schema_drift(empty_database_url) == []


def test_head_revision_agrees_with_alembic() -> None:
    from alembic.script import ScriptDirectory

    assert [head_revision()] == ScriptDirectory(str(migrations_dir())).get_heads()
