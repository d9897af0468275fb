"""The database guards itself: state graph, append-only audit trail, tripwire, uniqueness.

The tests share one database per module (each works on checkouts with fresh ids), so the large
tripwire matrix runs in milliseconds per case rather than paying for a database each.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import sensitive
from orchestrator.states import CANCEL, FAIL, STEP_STATES, TERMINAL_STATES, legal_moves
from orchestrator.store.schema import (
    CHECKOUT_STATES,
    COLUMNS_CHANGING_AFTER_FINISH,
    SQLSTATE_APPEND_ONLY,
    SQLSTATE_ILLEGAL_TRANSITION,
    SQLSTATE_TRIPWIRE,
    checkout_events,
    checkout_state_transitions,
    checkouts,
)
from tests.fixtures.checkout_rows import CHANGED_VALUE, PATH_TO
from tests.fixtures.db import libpq_url
from tests.secret_cases import CASES, SecretCase, as_json, params


@pytest.fixture
def engine(shared_engine: AsyncEngine) -> AsyncEngine:
    return shared_engine


def checkout_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "app_order_id": f"order-{uuid.uuid4().hex[:8]}",
        "state": "new",
        "request": {"skus": [{"sku_id": 196777, "quantity": 2}], "currency": "USD"},
        "payment_kind": "token",
        "currency": "USD",
    }
    values.update(overrides)
    return values


async def add_checkout(engine: AsyncEngine, **overrides: Any) -> uuid.UUID:
    values = checkout_values(**overrides)
    async with engine.begin() as conn:
        await conn.execute(checkouts.insert().values(values))
    return values["id"]  # type: ignore[no-any-return]


async def add_event(engine: AsyncEngine, checkout_id: uuid.UUID, seq: int, **values: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            checkout_events.insert().values(checkout_id=checkout_id, seq=seq, kind="test", **values)
        )


async def refused(engine: AsyncEngine, statement: sa.Executable) -> psycopg.Error:
    """Run a statement that the database must refuse; return the driver's error."""
    with pytest.raises(sa.exc.DBAPIError) as caught:
        async with engine.begin() as conn:
            await conn.execute(statement)
    error = caught.value.orig
    assert isinstance(error, psycopg.Error)
    return error


async def set_state(engine: AsyncEngine, checkout_id: uuid.UUID, state: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            checkouts.update().where(checkouts.c.id == checkout_id).values(state=state)
        )


# -- the append-only audit trail ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        (checkout_events.update().values(kind="edited"), "UPDATE"),
        (checkout_events.delete(), "DELETE"),
        (sa.text("TRUNCATE checkout_events"), "TRUNCATE"),
    ],
)
async def test_events_are_append_only(
    engine: AsyncEngine, statement: sa.Executable, operation: str
) -> None:
    checkout_id = await add_checkout(engine)
    await add_event(engine, checkout_id, 1)
    error = await refused(engine, statement)
    assert error.sqlstate == SQLSTATE_APPEND_ONLY
    assert f"checkout_events is append-only: {operation} refused" in str(error)
    async with engine.connect() as conn:
        query = sa.select(checkout_events.c.kind).where(
            checkout_events.c.checkout_id == checkout_id
        )
        kinds = (await conn.execute(query)).scalars().all()
    assert kinds == ["test"]


async def test_events_refuse_even_a_delete_that_matches_nothing(engine: AsyncEngine) -> None:
    error = await refused(engine, checkout_events.delete().where(checkout_events.c.seq == -1))
    assert error.sqlstate == SQLSTATE_APPEND_ONLY


async def test_a_checkout_with_history_cannot_be_deleted(engine: AsyncEngine) -> None:
    """Audit history is forever, so the checkout it belongs to stays too (trigger, not a key)."""
    checkout_id = await add_checkout(engine)
    await add_event(engine, checkout_id, 1)
    error = await refused(engine, checkouts.delete().where(checkouts.c.id == checkout_id))
    assert error.sqlstate == SQLSTATE_APPEND_ONLY
    assert "kept forever" in str(error)
    error = await refused(engine, sa.text("TRUNCATE checkouts CASCADE"))
    assert error.sqlstate == SQLSTATE_APPEND_ONLY


# -- the state graph ------------------------------------------------------------------------------


async def test_legal_transitions_are_accepted(engine: AsyncEngine) -> None:
    checkout_id = await add_checkout(engine)
    path = [
        "created",
        "customer_applied",
        "shipping_applied",
        "paid",
        "priced",
        "requires_action",
        "priced",
        "submitted",
    ]
    for state in path:
        await set_state(engine, checkout_id, state)
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(checkouts).where(checkouts.c.id == checkout_id))).one()
    assert row.state == "submitted"


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], "submitted"),
        ([], "paid"),
        (["created"], "shipping_applied"),
        (["created", "customer_applied", "awaiting_payment"], "priced"),
        (["failed"], "submitted"),
        (["created", "failed"], "requires_action"),
        (["canceled"], "created"),
        (["created", "failed"], "canceled"),
    ],
)
async def test_illegal_transitions_are_refused(
    engine: AsyncEngine, path: list[str], illegal: str
) -> None:
    checkout_id = await add_checkout(engine)
    for state in path:
        await set_state(engine, checkout_id, state)
    before = path[-1] if path else "new"
    statement = checkouts.update().where(checkouts.c.id == checkout_id).values(state=illegal)
    error = await refused(engine, statement)
    assert error.sqlstate == SQLSTATE_ILLEGAL_TRANSITION
    assert f"illegal checkout transition {before} -> {illegal}" in str(error)


async def test_every_non_terminal_state_can_fail_and_cancel(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(checkout_state_transitions))).all()
    graph = {(r.from_state, r.to_state): r.trigger for r in rows}
    non_terminal = set(CHECKOUT_STATES) - TERMINAL_STATES
    # Nothing leaves a terminal state but a retry of a failed one (test_retry_guards.py).
    assert {source for source, _ in graph} == non_terminal | {"failed"}
    assert {to for source, to in graph if source == "failed"} == set(STEP_STATES)
    for source in non_terminal:
        assert graph[(source, "failed")] == "fail"
        assert graph[(source, "canceled")] == "cancel"
    other_moves = [m for m in legal_moves() if m[2] not in (FAIL, CANCEL)]
    assert len(graph) == len(other_moves) + 2 * len(non_terminal)


@pytest.mark.parametrize("state", ["created", "submitted", "bogus"])
async def test_insert_must_start_in_new(engine: AsyncEngine, state: str) -> None:
    error = await refused(engine, checkouts.insert().values(checkout_values(state=state)))
    assert error.sqlstate == SQLSTATE_ILLEGAL_TRANSITION
    assert "a checkout starts in state new" in str(error)


# -- history even the table owner cannot rewrite -------------------------------------------------


async def _graph(engine: AsyncEngine) -> set[tuple[str, str, str]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(checkout_state_transitions))).all()
    return {(r.from_state, r.to_state, r.trigger) for r in rows}


_EDGE = sa.and_(
    checkout_state_transitions.c.from_state == "new",
    checkout_state_transitions.c.to_state == "created",
)


@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        (
            checkout_state_transitions.insert().values(
                from_state="new", to_state="submitted", trigger="skip"
            ),
            "INSERT",
        ),
        (checkout_state_transitions.update().where(_EDGE).values(to_state="submitted"), "UPDATE"),
        (checkout_state_transitions.delete().where(_EDGE), "DELETE"),
        (sa.text("TRUNCATE checkout_state_transitions"), "TRUNCATE"),
    ],
)
async def test_the_state_graph_cannot_be_changed_by_plain_sql(
    engine: AsyncEngine, statement: sa.Executable, operation: str
) -> None:
    before = await _graph(engine)
    error = await refused(engine, statement)
    assert error.sqlstate == SQLSTATE_APPEND_ONLY
    assert f"checkout_state_transitions is fixed by the migrations: {operation} refused" in str(
        error
    )
    assert await _graph(engine) == before
    checkout_id = await add_checkout(engine)
    skip = checkouts.update().where(checkouts.c.id == checkout_id).values(state="submitted")
    assert (await refused(engine, skip)).sqlstate == SQLSTATE_ILLEGAL_TRANSITION


async def finished_checkout(engine: AsyncEngine, state: str) -> uuid.UUID:
    """A checkout with a Violet cart, totals and bags, moved to `state` by legal moves."""
    checkout_id = await add_checkout(
        engine,
        violet_order_id=uuid.uuid4().int % 10**12,
        sub_total=1000,
        shipping_total=500,
        tax_total=80,
        discount_total=0,
        total=1580,
        bags=[{"bag_id": 10068, "status": "ACCEPTED"}],
        violet_status="COMPLETED",
    )
    for step in PATH_TO[state]:
        await set_state(engine, checkout_id, step)
    return checkout_id


async def _row_json(engine: AsyncEngine, checkout_id: uuid.UUID) -> Any:
    async with engine.connect() as conn:
        statement = sa.text("SELECT to_jsonb(c) FROM checkouts c WHERE id = :id")
        return (await conn.execute(statement, {"id": checkout_id})).scalar_one()


def test_every_column_of_a_checkout_has_a_changed_value() -> None:
    assert set(CHANGED_VALUE) == set(checkouts.c.keys()) - {"state"}


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
async def test_no_column_of_a_finished_checkout_can_be_rewritten(
    engine: AsyncEngine, state: str
) -> None:
    checkout_id = await finished_checkout(engine, state)
    before = await _row_json(engine, checkout_id)
    for column, value in CHANGED_VALUE.items():
        if column in COLUMNS_CHANGING_AFTER_FINISH:
            continue
        statement = sa.text(f"UPDATE checkouts SET {column} = {value} WHERE id = :id")
        error = await refused(engine, statement.bindparams(id=checkout_id))
        assert error.sqlstate == SQLSTATE_APPEND_ONLY, column
        assert f"checkout {checkout_id} is finished ({state})" in str(error)
        assert f"UPDATE of {column} refused" in str(error)
    assert await _row_json(engine, checkout_id) == before


@pytest.mark.parametrize("column", COLUMNS_CHANGING_AFTER_FINISH)
async def test_a_finished_checkout_changes_only_its_after_submit_columns(
    engine: AsyncEngine, column: str
) -> None:
    """The lease, the audit sequence and Violet's status move on after submit; nothing else."""
    checkout_id = await finished_checkout(engine, "submitted")
    before = await _row_json(engine, checkout_id)
    async with engine.begin() as conn:
        updated = await conn.execute(
            sa.text(f"UPDATE checkouts SET {column} = {CHANGED_VALUE[column]} WHERE id = :id"),
            {"id": checkout_id},
        )
        assert updated.rowcount == 1
    after = await _row_json(engine, checkout_id)
    assert after[column] != before[column]
    assert {k: v for k, v in after.items() if k != column} == {
        k: v for k, v in before.items() if k != column
    }


async def test_a_finished_checkout_accepts_an_update_that_changes_nothing(
    engine: AsyncEngine,
) -> None:
    checkout_id = await finished_checkout(engine, "submitted")
    before = await _row_json(engine, checkout_id)
    async with engine.begin() as conn:
        updated = await conn.execute(
            sa.text("UPDATE checkouts SET state = state, total = total WHERE id = :id"),
            {"id": checkout_id},
        )
        assert updated.rowcount == 1
    assert await _row_json(engine, checkout_id) == before


# -- uniqueness and checks ------------------------------------------------------------------------


async def test_app_order_id_is_unique(engine: AsyncEngine) -> None:
    taken = f"order-{uuid.uuid4().hex}"
    await add_checkout(engine, app_order_id=taken)
    error = await refused(engine, checkouts.insert().values(checkout_values(app_order_id=taken)))
    assert isinstance(error, psycopg.errors.UniqueViolation)
    assert error.diag.constraint_name == "uq_checkouts_app_order_id"


async def test_violet_order_id_is_unique_when_set(engine: AsyncEngine) -> None:
    await add_checkout(engine)  # NULL violet_order_id, twice: fine
    await add_checkout(engine)
    taken = uuid.uuid4().int % 10**12
    await add_checkout(engine, violet_order_id=taken)
    error = await refused(engine, checkouts.insert().values(checkout_values(violet_order_id=taken)))
    assert isinstance(error, psycopg.errors.UniqueViolation)
    assert error.diag.constraint_name == "uq_checkouts_violet_order_id"


@pytest.mark.parametrize(
    ("overrides", "constraint"),
    [
        ({"payment_kind": "cash"}, "ck_checkouts_payment_kind"),
        ({"currency": "usd"}, "ck_checkouts_currency"),
        ({"currency": "USDX"}, "ck_checkouts_currency"),
        ({"bags": {"bag_id": 1}}, "ck_checkouts_bags_array"),
        ({"request": ["not", "an", "object"]}, "ck_checkouts_request_object"),
        ({"last_error": "boom"}, "ck_checkouts_last_error_object"),
    ],
)
async def test_check_constraints(
    engine: AsyncEngine, overrides: dict[str, Any], constraint: str
) -> None:
    error = await refused(engine, checkouts.insert().values(checkout_values(**overrides)))
    assert isinstance(error, psycopg.errors.CheckViolation)
    assert error.diag.constraint_name == constraint


async def test_defaults(engine: AsyncEngine) -> None:
    checkout_id = await add_checkout(engine)
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(checkouts).where(checkouts.c.id == checkout_id))).one()
    assert (row.version, row.in_flight, row.lease_epoch, row.event_seq, row.bags) == (
        0,
        False,
        0,
        0,
        [],
    )
    assert row.created_at is not None and row.created_at.tzinfo is not None


# -- the tripwire ---------------------------------------------------------------------------------

# The cases are the one table every layer reads (tests/data/secret_cases.json): the tripwire
# must name the same rule as orchestrator.sensitive for each, and find nothing in what the
# client's redaction leaves of it. Configured credentials are unknown to the database.
DATABASE_CASES = [case for case in CASES if case.applies_in("database")]
ORDINARY_CASES = [case for case in CASES if case.rule is None]

# (table, column): where the tripwire must catch a secret.
JSON_COLUMNS = [
    ("checkouts", "request"),
    ("checkouts", "bags"),
    ("checkouts", "last_error"),
    ("checkout_events", "request_body"),
    ("checkout_events", "response_body"),
    ("checkout_events", "detail"),
]


def _fit(column: str, doc: Any) -> Any:
    """Shape a document to the column's own CHECK (bags: array; request, last_error: object)."""
    if column == "bags":
        return doc if isinstance(doc, list) else [doc]
    if column in ("request", "last_error"):
        return doc if isinstance(doc, dict) else {"wrapped": doc}
    return doc


async def insert_into(engine: AsyncEngine, table: str, column: str, doc: Any) -> uuid.UUID:
    """Insert a row whose `column` holds `doc` (a checkout is created first when needed)."""
    value = _fit(column, doc)
    if table == "checkouts":
        return await add_checkout(engine, **{column: value})
    checkout_id = await add_checkout(engine)
    async with engine.begin() as conn:
        await conn.execute(
            checkout_events.insert().values(
                checkout_id=checkout_id, seq=1, kind="test", **{column: value}
            )
        )
    return checkout_id


async def stored_value(engine: AsyncEngine, table: str, column: str, checkout_id: uuid.UUID) -> Any:
    """What `insert_into` stored in `column` for the checkout `checkout_id`."""
    target = {"checkouts": checkouts, "checkout_events": checkout_events}[table]
    key = target.c.id if table == "checkouts" else target.c.checkout_id
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(target.c[column]).where(key == checkout_id))).one()[0]


def _refusal(caught: pytest.ExceptionInfo[sa.exc.IntegrityError]) -> str:
    error = caught.value.orig
    assert isinstance(error, psycopg.Error)
    assert error.sqlstate == SQLSTATE_TRIPWIRE
    return error.diag.message_primary or ""


@pytest.mark.parametrize(("table", "column"), JSON_COLUMNS)
@pytest.mark.parametrize("case", params(DATABASE_CASES))
async def test_tripwire_refuses_every_secret_of_the_table_naming_its_rule(
    engine: AsyncEngine, table: str, column: str, case: SecretCase
) -> None:
    with pytest.raises(sa.exc.IntegrityError) as caught:
        await insert_into(engine, table, column, as_json(case))
    message = _refusal(caught)
    assert message.startswith(f"tripwire: {table}.{column} holds {case.rule}: ")
    for value in ("hunter2", "987", "4242424242424242", "4242 4242", "abc123", "s3cr3t"):
        assert value not in message


@pytest.mark.parametrize("case", params([c for c in DATABASE_CASES if c.is_text]))
async def test_tripwire_refuses_every_secret_of_the_table_in_error_messages(
    engine: AsyncEngine, case: SecretCase
) -> None:
    checkout_id = await add_checkout(engine)
    statement = checkout_events.insert().values(
        checkout_id=checkout_id, seq=1, kind="error", error_message=case.text
    )
    error = await refused(engine, statement)
    assert error.sqlstate == SQLSTATE_TRIPWIRE
    assert f"checkout_events.error_message holds {case.rule}: " in str(error)


@pytest.mark.parametrize("case", params(CASES))
def test_the_tripwire_and_the_client_follow_one_specification(
    sync_conn: psycopg.Connection[Any], case: SecretCase
) -> None:
    """Per case: the database finds the rule the Python specification finds (none for what
    only the process can know), and nothing in what the client's redaction leaves."""
    expected = case.rule if case.applies_in("database") else None
    if case.is_text:
        row = sync_conn.execute("SELECT orchestrator_secret_in_text(%s)", (case.text,)).fetchone()
        assert row is not None
        assert (row[0].split(":")[0] if row[0] else None) == expected, row[0]
        redacted_text = sensitive.redact_text(case.text or "")
        row = sync_conn.execute("SELECT orchestrator_secret_in_text(%s)", (redacted_text,))
        assert row.fetchone() == (None,)
    found = secret_in(sync_conn, as_json(case))
    assert (found.split(":")[0] if found else None) == expected, found
    assert secret_in(sync_conn, sensitive.redact_json(as_json(case))) is None


@pytest.mark.parametrize("column", ["request", "bags", "last_error"])
async def test_tripwire_guards_checkout_updates(engine: AsyncEngine, column: str) -> None:
    checkout_id = await add_checkout(engine)
    statement = (
        checkouts.update()
        .where(checkouts.c.id == checkout_id)
        .values({column: _fit(column, {"payment": {"card_cvc": "987"}})})
    )
    error = await refused(engine, statement)
    assert error.sqlstate == SQLSTATE_TRIPWIRE
    assert f"checkouts.{column}" in str(error)


@pytest.mark.parametrize(("table", "column"), JSON_COLUMNS)
async def test_tripwire_accepts_ordinary_and_redacted_json(
    engine: AsyncEngine, table: str, column: str
) -> None:
    docs = [as_json(case) for case in ORDINARY_CASES]
    docs += [sensitive.redact_json(as_json(case)) for case in DATABASE_CASES]
    for doc in docs:
        checkout_id = await insert_into(engine, table, column, doc)
        assert await stored_value(engine, table, column, checkout_id) == _fit(column, doc)


async def test_tripwire_accepts_ordinary_error_messages(engine: AsyncEngine) -> None:
    checkout_id = await add_checkout(engine)
    texts = [case.text for case in ORDINARY_CASES if case.is_text]
    for seq, text in enumerate(texts, start=1):
        await add_event(engine, checkout_id, seq, error_message=text)
    async with engine.connect() as conn:
        stored = await conn.execute(
            sa.select(checkout_events.c.error_message)
            .where(checkout_events.c.checkout_id == checkout_id)
            .order_by(checkout_events.c.seq)
        )
        assert list(stored.scalars()) == texts


async def test_the_request_keeps_its_payment_token_but_nothing_secret_in_it(
    engine: AsyncEngine,
) -> None:
    """A token checkout resumes with the payment token its request stores: that one `token`
    key is checked as text; anywhere else a `token` key with a value is refused."""
    token_payment = {"payment": {"type": "token", "token": "tok_visa", "provider": "STRIPE"}}
    await add_checkout(engine, request=token_payment)
    with pytest.raises(sa.exc.IntegrityError) as caught:
        await insert_into(engine, "checkout_events", "detail", token_payment)
    assert "holds secret_key: " in _refusal(caught)
    for token in ("pi_3Mtw_secret_hunter2", "4242 4242 4242 4242"):
        bad = {"payment": {"type": "token", "token": token, "provider": "STRIPE"}}
        with pytest.raises(sa.exc.IntegrityError) as caught:
            await add_checkout(engine, request=bad)
        assert _refusal(caught).startswith("tripwire: checkouts.request holds ")
    with pytest.raises(sa.exc.IntegrityError):
        await add_checkout(engine, request={**token_payment, "password": "hunter2"})


# -- the tripwire's card detector, as a property --------------------------------------------------


def luhn_check_digit(payload: str) -> str:
    total = 0
    for i, char in enumerate(reversed(payload)):
        d = int(char)
        if i % 2 == 0:  # doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def grouped(digits: str, sizes: list[int], separator: str) -> str:
    parts, start = [], 0
    for size in sizes:
        if start < len(digits):
            parts.append(digits[start : start + size])
            start += size
    if start < len(digits):
        parts.append(digits[start:])
    return separator.join(parts)


@pytest.fixture
def sync_conn(shared_database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(libpq_url(shared_database_url), autocommit=True) as conn:
        yield conn


def secret_in(conn: psycopg.Connection[Any], doc: Any) -> str | None:
    row = conn.execute("SELECT orchestrator_secret_in_json(%s)", (Jsonb(doc),)).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


payloads = st.integers(min_value=12, max_value=18).flatmap(
    lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=payloads,
    sizes=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=6),
    separator=st.sampled_from(["", " ", "-"]),
    prefix=st.sampled_from(["", "card ", "x", '"pan": ']),
)
def test_every_luhn_valid_number_is_caught(
    sync_conn: psycopg.Connection[Any], payload: str, sizes: list[int], separator: str, prefix: str
) -> None:
    number = payload + luhn_check_digit(payload)
    found = secret_in(sync_conn, {"note": prefix + grouped(number, sizes, separator)})
    # A shorter run of whole groups may be Luhn-valid too and be reported first.
    assert found is not None and found.startswith("card_number: a Luhn-valid ")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=payloads, wrong=st.integers(min_value=1, max_value=9))
def test_luhn_invalid_numbers_pass(
    sync_conn: psycopg.Connection[Any], payload: str, wrong: int
) -> None:
    number = payload + str((int(luhn_check_digit(payload)) + wrong) % 10)
    assert secret_in(sync_conn, {"note": number}) is None
