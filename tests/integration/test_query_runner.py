"""The audit queries answer the same on both query runners: a SQLAlchemy engine (the library's)
and the plain psycopg connection the read-only CLI opens; and that connection refuses a database
as the engine's schema check does, with the same words."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from orchestrator import audit
from orchestrator.api import Orchestrator
from orchestrator.errors import DatabaseUnavailable, SchemaNotMigrated
from orchestrator.store import database, query_runner
from orchestrator.store.query_runner import EngineRunner, PsycopgRunner, as_runner
from tests.fixtures.orchestrator import DECLINED, INTENT, TOKEN, checkout_request


def _comparable(value: Any) -> Any:
    """A result without the moments each read took (`local_db_now`, a stats' `at`)."""
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.asdict(value)
        fields.pop("at", None)
        return fields
    return value


async def test_both_runners_give_the_same_answers(orch: Orchestrator, database_url: str) -> None:
    done = await orch.start(checkout_request(payment=TOKEN))
    declined = await orch.start(checkout_request(payment=DECLINED))
    await orch.start(checkout_request(payment=INTENT))
    engine_runner = as_runner(orch.engine)
    assert isinstance(engine_runner, EngineRunner)

    async with query_runner.connect(database_url) as plain:
        assert isinstance(plain, PsycopgRunner) and as_runner(plain) is plain
        for runner in (orch.engine, plain):
            found = await audit.find_checkout(runner, str(done.violet_order_id))
            assert found.id == done.id
        answers = []
        for runner in (orch.engine, plain):
            answers.append(
                [
                    await audit.find_checkout(runner, done.app_order_id),
                    await audit.timeline(runner, done.id),
                    await audit.list_checkouts(runner),
                    await audit.list_checkouts(runner, error_type=declined.last_error["type"]),
                    await audit.stats(runner),
                    await audit.stats(runner, exact_below=1),
                ]
            )
    by_engine, by_psycopg = (_comparable(a) for a in answers)
    assert by_engine == by_psycopg
    assert [c["id"] for c in by_psycopg[3]] == [declined.id]
    assert by_psycopg[4]["total"] == 3


async def test_the_plain_connection_refuses_an_unmigrated_database_as_the_engine_does(
    empty_database_url: str,
) -> None:
    engine = database.create_engine(empty_database_url, pool_size=1)
    try:
        with pytest.raises(SchemaNotMigrated) as by_engine:
            await database.check_schema(engine)
    finally:
        await engine.dispose()
    with pytest.raises(SchemaNotMigrated) as by_psycopg:
        async with query_runner.connect(empty_database_url):
            pass
    assert str(by_psycopg.value) == str(by_engine.value)


async def test_the_plain_connection_reports_an_unreachable_database_as_the_engine_does(
    database_url: str,
) -> None:
    url = make_url(database_url).set(host="127.0.0.1", port=1, password="s3cret")
    unreachable = url.render_as_string(hide_password=False)
    engine = database.create_engine(unreachable, pool_size=1)
    try:
        with pytest.raises(DatabaseUnavailable) as by_engine:
            await database.check_schema(engine)
    finally:
        await engine.dispose()
    with pytest.raises(DatabaseUnavailable) as by_psycopg:
        async with query_runner.connect(unreachable):
            pass
    assert str(by_psycopg.value) == str(by_engine.value)
    assert "cannot connect to the database at 127.0.0.1:1/" in str(by_psycopg.value)
    assert "s3cret" not in str(by_psycopg.value)


async def test_the_cli_runner_turns_jit_off(database_url: str) -> None:
    async with query_runner.connect(database_url) as plain:
        assert await plain.rows("SHOW jit") == [{"jit": "off"}]
