"""The application role `orchestrator db grants` prints: enough to run checkouts and recovery end
to end, and not enough to disable a guard or rewrite history.

The role is created in the test's database with the printed script (run as the tables' owner,
here the server's superuser), under a name unique to the test that needs quoting, and dropped
afterwards: roles are server-wide and several people share the server.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from orchestrator import audit
from orchestrator.api import Orchestrator
from orchestrator.cli.app import app
from orchestrator.recovery import RecoveryJob
from orchestrator.sandbox import SandboxControl
from orchestrator.store.grants import CHECKOUT_COLUMNS_FIXED_AT_INSERT
from orchestrator.store.schema import (
    COLUMNS_CHANGING_AFTER_FINISH,
    SQLSTATE_APPEND_ONLY,
    SQLSTATE_ILLEGAL_TRANSITION,
    TABLE_NAMES,
    VERSION_TABLE,
)
from orchestrator.verify import verify
from tests.fixtures.checkout_rows import CHANGED_VALUE, PATH_TO
from tests.fixtures.db import libpq_url, run_sql
from tests.fixtures.orchestrator import (
    DECLINED,
    DIGITAL,
    INTENT,
    TOKEN,
    VISA,
    checkout_request,
    make_settings,
)
from tests.fixtures.sandbox import IN_PROCESS_BASE_URL


@dataclass(frozen=True)
class AppRole:
    name: str
    url: str  # the test database, connecting as the role


def grants_script(role: str) -> str:
    result = CliRunner().invoke(app, ["db", "grants", "--role", role])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def app_role(database_url: str) -> Iterator[AppRole]:
    name = f'orch_t_app {uuid.uuid4().hex[:10]} "quoted" it\'s'
    password = secrets.token_hex(16)
    role = sql.Identifier(name)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as owner:
        owner.execute(grants_script(name))
        owner.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(password)))
    url = make_url(database_url).set(username=name, password=password)
    try:
        yield AppRole(name, url.render_as_string(hide_password=False))
    finally:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as owner:
            owner.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (name,),
            )
            owner.execute(sql.SQL("DROP OWNED BY {}").format(role))
            owner.execute(sql.SQL("DROP ROLE {}").format(role))


@pytest.fixture
def as_app(app_role: AppRole) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(libpq_url(app_role.url), autocommit=True) as conn:
        yield conn


def refused(conn: psycopg.Connection[Any], statement: str, params: Any = None) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement, params)
    return caught.value


def new_checkout(conn: psycopg.Connection[Any]) -> uuid.UUID:
    """A checkout inserted as the role (what `start` does), in state new."""
    checkout_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO checkouts (id, app_order_id, state, request, payment_kind, currency, "
        "violet_order_id, sub_total, shipping_total, tax_total, discount_total, total) "
        "VALUES (%s, %s, 'new', '{}', 'token', 'USD', %s, 1000, 500, 80, 0, 1580)",
        (checkout_id, f"lp-{checkout_id.hex[:12]}", uuid.uuid4().int % 10**12),
    )
    return checkout_id


def move(conn: psycopg.Connection[Any], checkout_id: uuid.UUID, *states: str) -> None:
    for state in states:
        conn.execute("UPDATE checkouts SET state = %s WHERE id = %s", (state, checkout_id))


# -- what the role can do: everything the library and the recovery job need ---------------------


async def test_checkouts_and_recovery_run_end_to_end_as_the_application_role(
    app_role: AppRole,
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> None:
    settings = make_settings(app_role.url, IN_PROCESS_BASE_URL)
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        async with orch.engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT current_user")).scalar() == app_role.name

        token = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        card = await orch.start(checkout_request(payment=VISA))
        declined = await orch.start(checkout_request(payment=DECLINED))
        assert (token.state, card.state, declined.state) == ("submitted", "submitted", "failed")

        confirmed = await orch.start(checkout_request(skus=DIGITAL, payment=INTENT))
        assert confirmed.state == "awaiting_confirmation" and confirmed.violet_order_id
        await sandbox_control.confirm_payment(confirmed.violet_order_id)
        assert (await orch.confirm_payment(confirmed.id)).state == "submitted"

        waiting = await orch.start(checkout_request(skus=DIGITAL, payment=INTENT))
        canceled = await orch.cancel(waiting.id)
        assert (canceled.state, canceled.violet_status) == ("canceled", "DELETED")

        # The recovery job: registered checkouts, and one whose worker died mid-step.
        registered = [
            await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN), run=False)
            for _ in range(2)
        ]
        await run_sql(
            database_url,
            "UPDATE checkouts SET lease_owner = 'dead-worker', in_flight = true, attempt = 1, "
            "lease_expires_at = now() - interval '1 second', "
            "next_attempt_at = now() - interval '1 second' WHERE id = %(id)s",
            {"id": registered[1].id},
        )
        summary = await RecoveryJob(orch.worker).run("until-idle")
        assert summary.claimed == 2 and summary.submitted == 2 and summary.errors == 0
        taken_over = [e.kind for e in await orch.history(registered[1].id)]
        assert "lease_taken_over" in taken_over

        await orch.repo.throttle("global", 0.001)
        await orch.repo.throttle("global", 0.001)  # the ON CONFLICT DO UPDATE path
        await orch.repo.throttle_until("global", cap=orch.settings.max_retry_after)

        report = await verify(orch.worker, check_duplicates=True)
        assert report.drift == 0 and report.checked == 7
        stats = await audit.stats(orch.engine, exact=True)
        assert stats.by_state["submitted"] == 5
        assert len(await audit.list_checkouts(orch.engine)) == 7
        assert await audit.timeline(orch.engine, token.id)


# -- what it cannot do ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE checkouts DISABLE TRIGGER checkouts_keep_finished",
        "ALTER TABLE checkouts DISABLE TRIGGER ALL",
        "ALTER TABLE checkout_events DISABLE TRIGGER checkout_events_append_only",
        "DROP TRIGGER checkout_state_transitions_fixed ON checkout_state_transitions",
        "DROP FUNCTION orchestrator_refuse_change() CASCADE",
        "CREATE OR REPLACE FUNCTION orchestrator_guard_transition() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "CREATE TRIGGER checkouts_zz BEFORE UPDATE ON checkouts "
        "FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
        "ALTER TABLE checkouts OWNER TO CURRENT_USER",
        "SET session_replication_role = replica",
        "SET ROLE postgres",
    ],
)
def test_the_application_role_cannot_disable_or_replace_a_guard(
    as_app: psycopg.Connection[Any], statement: str
) -> None:
    error = refused(as_app, statement)
    assert isinstance(error, psycopg.errors.InsufficientPrivilege), error


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO checkout_state_transitions VALUES ('new', 'submitted', 'skip')",
        "UPDATE checkout_state_transitions SET to_state = 'submitted' WHERE from_state = 'new'",
        "DELETE FROM checkout_state_transitions",
        "UPDATE checkout_events SET kind = 'edited'",
        "DELETE FROM checkout_events",
        "DELETE FROM checkouts",
        "DELETE FROM violet_throttle",
        f"UPDATE {VERSION_TABLE} SET version_num = '0001'",
        *(f"TRUNCATE {table}" for table in sorted(TABLE_NAMES | {VERSION_TABLE})),
    ],
)
def test_the_application_role_cannot_rewrite_or_delete_history(
    as_app: psycopg.Connection[Any], statement: str
) -> None:
    error = refused(as_app, statement)
    assert isinstance(error, psycopg.errors.InsufficientPrivilege), error


def test_a_temporary_table_cannot_stand_in_for_the_state_graph(
    as_app: psycopg.Connection[Any],
) -> None:
    """`pg_temp` comes first in every search_path, and any role may create temporary tables."""
    as_app.execute("CREATE TEMP TABLE checkout_state_transitions (LIKE checkout_state_transitions)")
    as_app.execute("INSERT INTO checkout_state_transitions VALUES ('new', 'submitted', 'skip')")
    checkout_id = new_checkout(as_app)
    error = refused(
        as_app, "UPDATE checkouts SET state = 'submitted' WHERE id = %s", (checkout_id,)
    )
    assert error.sqlstate == SQLSTATE_ILLEGAL_TRANSITION


@pytest.mark.parametrize("state", ["submitted", "failed", "canceled"])
def test_the_application_role_cannot_rewrite_a_finished_checkout(
    as_app: psycopg.Connection[Any], state: str
) -> None:
    checkout_id = new_checkout(as_app)
    move(as_app, checkout_id, *PATH_TO[state])
    for column, value in CHANGED_VALUE.items():
        if column in COLUMNS_CHANGING_AFTER_FINISH:
            continue  # the order's life after submit (tests/integration/test_schema_guards.py)
        statement = f"UPDATE checkouts SET {column} = {value} WHERE id = %s"
        error = refused(as_app, statement, (checkout_id,))
        if column in CHECKOUT_COLUMNS_FIXED_AT_INSERT:
            assert isinstance(error, psycopg.errors.InsufficientPrivilege), column
        else:
            assert error.sqlstate == SQLSTATE_APPEND_ONLY, (column, error)


@pytest.mark.parametrize("column", CHECKOUT_COLUMNS_FIXED_AT_INSERT)
def test_what_a_checkout_is_cannot_be_changed_by_the_application_role(
    as_app: psycopg.Connection[Any], column: str
) -> None:
    """Identity, request and creation time are written once, by the INSERT."""
    checkout_id = new_checkout(as_app)
    statement = f"UPDATE checkouts SET {column} = {CHANGED_VALUE[column]} WHERE id = %s"
    error = refused(as_app, statement, (checkout_id,))
    assert isinstance(error, psycopg.errors.InsufficientPrivilege)


def test_the_application_role_is_neither_owner_nor_member_of_the_owner(
    as_app: psycopg.Connection[Any],
) -> None:
    found = as_app.execute(
        "SELECT count(*) FROM pg_class c WHERE c.relname = ANY(%s) "
        "AND pg_has_role(current_user, c.relowner, 'MEMBER')",
        (sorted(TABLE_NAMES | {VERSION_TABLE}),),
    ).fetchone()
    assert found == (0,)
    attributes = as_app.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication "
        "FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert attributes == (False, False, False, False, False)


# -- the script itself ----------------------------------------------------------------------------

# What the application and the recovery job may do, per table (UPDATE on checkouts: by column).
EXPECTED_PRIVILEGES = {
    "checkouts": {"SELECT", "INSERT"},
    "checkout_events": {"SELECT", "INSERT"},
    "checkout_state_transitions": {"SELECT"},
    "violet_throttle": {"SELECT", "INSERT", "UPDATE"},
    VERSION_TABLE: {"SELECT"},
    "webhook_inbox": {"SELECT", "INSERT"},
    "checkout_bags": {"SELECT", "INSERT"},
    "checkout_bag_transitions": {"SELECT"},
    "bag_actions": {"SELECT", "INSERT"},
    "checkout_changes": {"SELECT", "INSERT"},
    "audit_retention": set(),
}
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def _privileges(owner: psycopg.Connection[Any], role: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for table in EXPECTED_PRIVILEGES:
        found[table] = {
            privilege
            for privilege in TABLE_PRIVILEGES
            if owner.execute(
                "SELECT has_table_privilege(%s, %s, %s)", (role, table, privilege)
            ).fetchone()
            == (True,)
        }
    return found


@pytest.fixture
def owner(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        yield conn


def _drop_role(owner: psycopg.Connection[Any], name: str) -> None:
    owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_the_script_grants_exactly_what_the_code_needs_to_any_role_name(
    owner: psycopg.Connection[Any],
) -> None:
    """A name SQL would misread unquoted: spaces, both quotes, a semicolon, a comment marker."""
    name = f'orch_t_app {uuid.uuid4().hex[:8]} "x"; DROP TABLE checkouts; -- it\'s'
    owner.execute(grants_script(name))
    try:
        assert _privileges(owner, name) == EXPECTED_PRIVILEGES
        updatable = {
            column
            for (column,) in owner.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'checkouts'::regclass "
                "AND attnum > 0 AND has_column_privilege(%s, attrelid, attnum, 'UPDATE')",
                (name,),
            )
        }
        assert "state" in updatable and "total" in updatable
        assert not updatable & set(CHECKOUT_COLUMNS_FIXED_AT_INSERT)
        assert owner.execute("SELECT to_regclass('checkouts')").fetchone() != (None,)
    finally:
        _drop_role(owner, name)


def test_the_script_for_an_existing_role_takes_back_what_it_should_not_have(
    owner: psycopg.Connection[Any],
) -> None:
    name = f"orch_t_app_{uuid.uuid4().hex[:10]}"
    owner.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        owner.execute(
            sql.SQL("GRANT ALL ON checkouts, checkout_events TO {}").format(sql.Identifier(name))
        )
        result = CliRunner().invoke(app, ["db", "grants", "--role", name, "--existing-role"])
        assert result.exit_code == 0, result.output
        assert "CREATE ROLE" not in result.stdout
        owner.execute(result.stdout)
        assert _privileges(owner, name) == EXPECTED_PRIVILEGES
    finally:
        _drop_role(owner, name)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "must not be empty"),
        ("pg_orchestrator", "reserved"),
        ("public", "reserved"),
        ("a" * 64, "at most 63 bytes"),
        ("app\n; DROP TABLE checkouts", "control characters"),
    ],
)
def test_the_script_refuses_a_role_name_postgres_would_not_take_as_given(
    name: str, why: str
) -> None:
    result = CliRunner().invoke(app, ["db", "grants", "--role", name])
    assert result.exit_code == 2
    assert why in result.output


async def test_the_application_role_receives_and_settles_webhooks_and_moves_bags(
    app_role: AppRole, as_app: psycopg.Connection[Any]
) -> None:
    """What the receiver and the applier do, as the role; what they never do is refused."""
    from orchestrator.store import inbox

    url = libpq_url(app_role.url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        first = inbox.InboxEvent("lp-evt-1", "ORDER_UPDATED", {"id": 1}, violet_order_id=1)
        second = inbox.InboxEvent("lp-evt-2", "MERCHANT_DISABLED", {"id": 3}, merchant_id=3)
        assert await inbox.insert(conn, first)
        assert await inbox.insert_many(conn, [first, second]) == [False, True]
        async with conn.transaction():
            claimed = await inbox.claim_pending(conn)
            assert [row.event_id for row in claimed] == ["lp-evt-1", "lp-evt-2"]
            assert await inbox.settle(conn, ["lp-evt-1"], inbox.APPLIED) == 1
            assert await inbox.settle(conn, ["lp-evt-2"], inbox.IGNORED, "not ours") == 1
    checkout_id = new_checkout(as_app)
    as_app.execute(
        "INSERT INTO checkout_bags (checkout_id, bag_id, status, status_at) "
        "VALUES (%s, 11, 'ACCEPTED', now())",
        (checkout_id,),
    )
    as_app.execute(
        "UPDATE checkout_bags SET status = 'COMPLETED', fulfillment_status = 'SHIPPED' "
        "WHERE checkout_id = %s",
        (checkout_id,),
    )
    for statement in (
        "UPDATE webhook_inbox SET body = '{}'",
        "UPDATE webhook_inbox SET event_id = 'x'",
        "UPDATE webhook_inbox SET received_at = now()",
        "DELETE FROM webhook_inbox",
        "UPDATE checkout_bags SET bag_id = 12",
        "DELETE FROM checkout_bags",
        "INSERT INTO checkout_bag_transitions VALUES ('REFUNDED', 'ACCEPTED')",
    ):
        error = refused(as_app, statement)
        assert isinstance(error, psycopg.errors.InsufficientPrivilege), statement
    error = refused(
        as_app,
        "UPDATE checkout_bags SET status = 'ACCEPTED' WHERE checkout_id = %s",
        (checkout_id,),
    )
    assert error.sqlstate == SQLSTATE_ILLEGAL_TRANSITION


async def test_the_application_role_retries_a_failed_checkout(
    app_role: AppRole,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> None:
    """A retry reads the audit trail in the finished-row guard and appends to the feed: the
    role's grants are enough for it."""
    settings = make_settings(app_role.url, IN_PROCESS_BASE_URL, max_attempts=1)
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        await sandbox_control.add_fault("price", "error", count=10, status=503)
        first = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        failed = await orch.run(first.id, retry_wait=5)
        assert failed.state == "failed", failed
        await sandbox_control.clear_faults()
        retried = await orch.retry(first.id, actor="ops:ada", reason="Violet is back")
        assert retried.state == "submitted", retried.last_error


def test_a_temporary_table_cannot_stand_in_for_the_audit_trail(
    as_app: psycopg.Connection[Any],
) -> None:
    """The reopen guard reads where a checkout failed from the real trail (pinned by 0011): a
    temporary `checkout_events` claiming another failure cannot open another way out."""
    checkout_id = new_checkout(as_app)
    move(as_app, checkout_id, "created", "customer_applied", "paid", "priced", "failed")
    as_app.execute(
        "INSERT INTO checkout_events (checkout_id, seq, kind, from_state, to_state, step) "
        "VALUES (%s, 1, 'transition', 'priced', 'failed', 'submit')",
        (checkout_id,),
    )
    as_app.execute("CREATE TEMP TABLE checkout_events (LIKE checkout_events)")
    as_app.execute(
        "INSERT INTO checkout_events (checkout_id, seq, at, kind, from_state, to_state, step) "
        "VALUES (%s, 9, now(), 'transition', 'new', 'failed', 'create_cart')",
        (checkout_id,),
    )
    error = refused(
        as_app,
        "UPDATE checkouts SET state = 'new', pending_step = 'create_cart', in_flight = true, "
        "attempt = 0, recoveries = 0, finished_at = NULL, lease_epoch = lease_epoch + 1, "
        "event_seq = event_seq + 2 WHERE id = %s",
        (checkout_id,),
    )
    assert error.sqlstate == SQLSTATE_APPEND_ONLY
    assert "failed in priced at step submit" in str(error)
