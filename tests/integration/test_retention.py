"""Retention: old events lose exactly their bulky parts, by the tables' owner only, and nothing
else about the trail can change.

Each trail is made of real checkouts driven through the sandbox (with webhook events applied),
some of them moved 100 days into the past by the server's superuser with the triggers off; the
superuser is also the tables' owner here, and the application role is made with
`orchestrator db grants` as in test_least_privilege.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from orchestrator import audit
from orchestrator.checkout import AuditEvent
from orchestrator.cli import render
from orchestrator.cli.app import app
from orchestrator.errors import InvalidRequest, OwnerRoleRequired
from orchestrator.retention import PruneReport, prune
from orchestrator.store import inbox
from orchestrator.store.query_runner import connect
from orchestrator.store.schema import SQLSTATE_APPEND_ONLY
from tests.fixtures.db import libpq_url
from tests.fixtures.retention import SKELETON, Trail, age, events, inbox_rows, make_trail
from tests.integration.test_least_privilege import AppRole, app_role  # noqa: F401 (fixture)

DAY_LIMIT = 200  # a detail value longer than this, as JSON, is bulky (migration 0014)
SETTLED = ("applied", "ignored")


@pytest.fixture
async def trail(database_url: str) -> Trail:
    """Eight checkouts (two of each kind); the first four are 100 days old."""
    made = await make_trail(database_url, 8)
    age(database_url, 100, [c.id for c in made.checkouts[:4]])
    return made


def _old(made: Trail) -> set[uuid.UUID]:
    return {c.id for c in made.checkouts[:4]}


def _jsonb_text(value: Any) -> str:
    """A JSON value as PostgreSQL writes jsonb (`, ` and `: ` separators), for its length."""
    return json.dumps(value, ensure_ascii=False)


def _bulky_keys(detail: Any) -> list[str]:
    doc = detail if isinstance(detail, dict) else {} if detail is None else {"value": detail}
    return sorted(k for k, v in doc.items() if len(_jsonb_text(v)) > DAY_LIMIT)


def _prunable(row: dict[str, Any]) -> bool:
    detail = row["detail"]
    if isinstance(detail, dict) and "pruned_at" in detail:
        return False
    return bool(row["request_body"] is not None or row["response_body"] is not None) or bool(
        _bulky_keys(detail)
    )


def _owner(database_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_url(database_url), autocommit=True)


def _refused(conn: psycopg.Connection[Any], statement: str, params: Any = None) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement, params)
    return caught.value


def _add_big_detail_event(database_url: str, checkout_id: uuid.UUID) -> dict[str, Any]:
    """An event with no bodies and one long detail value (a webhook's many bags, say), 100 days
    old: the owner writes it (the triggers allow any INSERT) and then ages it."""
    detail = {
        "event_type": "ORDER_SHIPPED",
        "bags": [{"bag_id": 700000 + i, "from": "ACCEPTED", "to": "COMPLETED"} for i in range(6)],
        "via": "webhook",
    }
    with _owner(database_url) as conn:
        conn.execute(
            "INSERT INTO checkout_events (checkout_id, seq, kind, detail) "
            "VALUES (%s, 1000, 'webhook_applied', %s)",
            (checkout_id, Jsonb(detail)),
        )
    age_one = "UPDATE checkout_events SET at = at - interval '100 days' WHERE seq = 1000"
    with _owner(database_url) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(age_one)
    return detail


# -- dry run and prune ----------------------------------------------------------------------------


async def test_a_dry_run_changes_nothing_and_counts_exactly_what_the_prune_removes(
    database_url: str, trail: Trail
) -> None:
    before_events, before_inbox = events(database_url), inbox_rows(database_url)
    old = _old(trail)
    expected = [row for (cid, _), row in before_events.items() if cid in old and _prunable(row)]
    old_orders = {c.violet_order_id for c in trail.checkouts[:4]}
    expected_inbox = [
        row
        for row in before_inbox.values()
        if row["state"] in SETTLED and row["violet_order_id"] in old_orders
    ]
    assert len(expected) > 20 and len(expected_inbox) >= 2  # the trail has both kinds

    plan = await prune(database_url, older_than_days=90, dry_run=True)

    assert plan.dry_run and plan.batches == 0
    assert events(database_url) == before_events and inbox_rows(database_url) == before_inbox
    assert plan.events.rows == len(expected)
    assert plan.inbox.rows == len(expected_inbox)
    assert plan.events.oldest == min(row["at"] for row in expected)
    assert plan.events.newest == max(row["at"] for row in expected)
    assert plan.events.bytes > 100 * len(expected) and plan.inbox.bytes > 1000

    done = await prune(database_url, older_than_days=90, batch=7)

    assert (done.events, done.inbox) == (plan.events, plan.inbox)  # the bytes too
    assert done.batches == -(-len(expected) // 7) + -(-len(expected_inbox) // 7)
    assert not done.dry_run and done.vacuumed == ("events", "inbox")


async def test_old_events_lose_exactly_their_bulky_parts_and_keep_their_skeleton(
    database_url: str, trail: Trail
) -> None:
    big = _add_big_detail_event(database_url, trail.checkouts[0].id)
    before = events(database_url)
    report = await prune(database_url, older_than_days=90)
    after = events(database_url)
    old = _old(trail)

    assert after.keys() == before.keys()  # nothing deleted
    pruned = 0
    for key, was in before.items():
        now = after[key]
        assert {c: now[c] for c in SKELETON} == {c: was[c] for c in SKELETON}, key
        if key[0] not in old or not _prunable(was):
            assert now == was, key  # inside the window, or nothing bulky: untouched
            continue
        pruned += 1
        assert now["request_body"] is None and now["response_body"] is None
        bulky = _bulky_keys(was["detail"])
        kept = {k: v for k, v in (was["detail"] or {}).items() if k not in bulky}
        stamp = now["detail"]["pruned_at"]
        assert now["detail"] == {
            **kept,
            "pruned_at": stamp,
            "pruned": [
                *(["request_body"] if was["request_body"] is not None else []),
                *(["response_body"] if was["response_body"] is not None else []),
                *(f"detail.{k}" for k in bulky),
            ],
        }
        assert (
            datetime.fromisoformat(stamp.replace("Z", "+00:00")).date() == datetime.now(UTC).date()
        )
    assert pruned == report.events.rows
    # The hand-made event: its long `bags` went, its short keys stayed.
    big_after = after[(trail.checkouts[0].id, 1000)]["detail"]
    assert big_after["pruned"] == ["detail.bags"]
    assert {k: big_after[k] for k in ("event_type", "via")} == {
        k: big[k] for k in ("event_type", "via")
    }
    # A transition keeps the cart it ended with (short): the trail still says what was bought.
    carts = [
        row["detail"]["cart"]
        for (cid, _), row in after.items()
        if cid in old and row["kind"] == "transition" and row["detail"]
    ]
    assert carts and all("total" in cart for cart in carts)


async def test_settled_webhook_events_lose_their_body_and_keep_their_dedupe_key(
    database_url: str, trail: Trail
) -> None:
    before = inbox_rows(database_url)
    await prune(database_url, older_than_days=90)
    after = inbox_rows(database_url)
    old_orders = {c.violet_order_id for c in trail.checkouts[:4]}
    stripped = 0
    for event_id, was in before.items():
        now = after[event_id]
        assert {k: v for k, v in now.items() if k != "body"} == {
            k: v for k, v in was.items() if k != "body"
        }
        if was["violet_order_id"] in old_orders and was["state"] in SETTLED:
            stripped += 1
            assert list(now["body"]) == ["pruned_at"]
        else:
            assert now["body"] == was["body"]
    assert stripped >= 2
    # A redelivery of a pruned event is still recognised: it changes nothing.
    event_id = next(e for e, row in after.items() if list(row["body"]) == ["pruned_at"])
    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as conn:
        again = inbox.InboxEvent(event_id, "ORDER_SHIPPED", {"id": 1, "status": "COMPLETED"})
        assert await inbox.insert(conn, again) is False
    assert inbox_rows(database_url)[event_id] == after[event_id]


async def test_an_event_written_under_older_tripwire_rules_is_still_pruned(
    database_url: str, trail: Trail
) -> None:
    """A value today's tripwire would refuse (a header line in a message, checked only since
    0006) in an old event: the prune removes its bodies and moves on, it is not stopped there."""
    checkout_id = trail.checkouts[1].id
    with _owner(database_url) as owner:
        owner.execute("SET session_replication_role = replica")  # as written before the rule
        owner.execute(
            "INSERT INTO checkout_events (checkout_id, seq, at, kind, error_message, "
            "request_body) VALUES (%s, 1001, now() - interval '100 days', 'violet_call', "
            "'Authorization: Bearer abc', %s)",
            (checkout_id, Jsonb({"note": "x"})),
        )
    report = await prune(database_url, older_than_days=90)
    row = events(database_url)[(checkout_id, 1001)]
    assert row["request_body"] is None and row["detail"]["pruned"] == ["request_body"]
    assert row["error_message"] == "Authorization: Bearer abc"  # the skeleton, as it was
    assert (await prune(database_url, older_than_days=90, dry_run=True)).events.rows == 0
    assert report.events.rows > 1


async def test_a_second_prune_is_a_no_op(database_url: str, trail: Trail) -> None:
    first = await prune(database_url, older_than_days=90)
    assert first.events.rows > 0
    pruned_events, pruned_inbox = events(database_url), inbox_rows(database_url)
    second = await prune(database_url, older_than_days=90)
    assert (second.events.rows, second.inbox.rows, second.batches) == (0, 0, 0)
    assert second.vacuumed == ()
    assert events(database_url) == pruned_events and inbox_rows(database_url) == pruned_inbox


async def test_a_prune_stopped_between_batches_is_finished_by_the_next_run(
    database_url: str, trail: Trail
) -> None:
    """A run that dies after its first committed batch leaves that batch done and the rest
    whole; the next run does the rest, and the end is the same as one uninterrupted run."""
    plan = await prune(database_url, older_than_days=90, dry_run=True)

    class Killed(Exception):
        pass

    def die(table: str, done: Any) -> None:
        raise Killed

    with pytest.raises(Killed):
        await prune(database_url, older_than_days=90, batch=5, on_batch=die)
    halfway = await prune(database_url, older_than_days=90, dry_run=True)
    assert halfway.events.rows == plan.events.rows - 5
    assert halfway.inbox.rows == plan.inbox.rows

    finished = await prune(database_url, older_than_days=90, batch=5)
    assert (finished.events.rows, finished.inbox.rows) == (plan.events.rows - 5, plan.inbox.rows)
    left = await prune(database_url, older_than_days=90, dry_run=True)
    assert (left.events.rows, left.inbox.rows) == (0, 0)


async def test_the_window_and_batch_are_bounded(database_url: str) -> None:
    for days, batch, field in ((0, 10, "older_than_days"), (90, 0, "batch")):
        with pytest.raises(InvalidRequest, match=field):
            await prune(database_url, older_than_days=days, batch=batch)


# -- who may prune --------------------------------------------------------------------------------


async def test_the_application_role_cannot_prune(
    database_url: str,
    trail: Trail,
    app_role: AppRole,  # noqa: F811 (the fixture imported above)
) -> None:
    before_events, before_inbox = events(database_url), inbox_rows(database_url)
    with pytest.raises(OwnerRoleRequired, match="owner"):
        await prune(app_role.url, older_than_days=90)
    # The command says so and exits 2 (a configuration problem), as the library.
    result = await _cli(app_role.url, "prune")
    assert result.exit_code == 2 and "must run as the owner" in result.output
    # A dry run only reads: the role may see what the owner's prune would do.
    plan = await prune(app_role.url, older_than_days=90, dry_run=True)
    assert plan.events.rows > 0

    with psycopg.connect(libpq_url(app_role.url), autocommit=True) as conn:
        # Straight SQL: no privilege to change events or webhook bodies, or to see the window.
        for statement in (
            "UPDATE checkout_events SET request_body = NULL, response_body = NULL",
            "UPDATE webhook_inbox SET body = '{}'",
            "UPDATE audit_retention SET audit_days = 1",
            "SELECT audit_days FROM audit_retention",
            "DELETE FROM checkout_events",
        ):
            error = _refused(conn, statement)
            assert isinstance(error, psycopg.errors.InsufficientPrivilege), statement
    # Were UPDATE granted by mistake, the trigger still refuses a role that is not the owner.
    with _owner(database_url) as owner:
        owner.execute(
            sql.SQL("GRANT UPDATE ON checkout_events TO {}").format(sql.Identifier(app_role.name))
        )
    with psycopg.connect(libpq_url(app_role.url), autocommit=True) as conn:
        error = _refused(
            conn,
            "UPDATE checkout_events SET request_body = NULL, response_body = NULL, "
            "detail = orchestrator_pruned_detail(request_body, response_body, detail, now()) "
            "WHERE checkout_id = %s",
            (trail.checkouts[0].id,),
        )
    assert error.sqlstate == SQLSTATE_APPEND_ONLY and "not the owner" in str(error)
    assert events(database_url) == before_events and inbox_rows(database_url) == before_inbox


# -- what no role can do --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("kind = 'edited'", "UPDATE of kind refused"),
        ("at = now()", "UPDATE of at refused"),
        ("http_status = 500", "UPDATE of http_status refused"),
        ("error_message = 'rewritten'", "UPDATE of error_message refused"),
        ("request_body = NULL", "only the prune's change is allowed"),
        ("request_body = NULL, response_body = NULL, detail = NULL", "only the prune's change"),
        (
            "request_body = NULL, response_body = NULL, detail = "
            "orchestrator_pruned_detail(request_body, response_body, detail, now() - interval "
            "'1 day')",
            "only the prune's change",
        ),
        ("response_body = '{\"forged\": true}'", "only the prune's change"),
    ],
)
async def test_no_role_changes_an_old_event_but_by_the_prunes_exact_change(
    database_url: str, trail: Trail, change: str, why: str
) -> None:
    """The owner (here the superuser) is refused too: the rule is the trigger's, not a grant."""
    call = next(
        (cid, seq)
        for (cid, seq), row in events(database_url).items()
        if cid == trail.checkouts[0].id and row["kind"] == "violet_call" and row["request_body"]
    )
    with _owner(database_url) as owner:
        error = _refused(
            owner,
            f"UPDATE checkout_events SET {change} WHERE checkout_id = %s AND seq = %s",
            call,
        )
    assert error.sqlstate == SQLSTATE_APPEND_ONLY, error
    assert "checkout_events is append-only" in str(error) and why in str(error)


async def test_nothing_inside_the_window_changes_and_nothing_is_ever_deleted(
    database_url: str, trail: Trail
) -> None:
    recent = trail.checkouts[5].id
    with _owner(database_url) as owner:
        error = _refused(
            owner,
            "UPDATE checkout_events SET request_body = NULL, response_body = NULL, "
            "detail = orchestrator_pruned_detail(request_body, response_body, detail, now()) "
            "WHERE checkout_id = %s",
            (recent,),
        )
        assert error.sqlstate == SQLSTATE_APPEND_ONLY
        assert "inside the retention window of 90 days" in str(error)
        for statement, params in (
            ("DELETE FROM checkout_events WHERE checkout_id = %s", (trail.checkouts[0].id,)),
            ("DELETE FROM checkout_events WHERE false", None),  # refused per statement
        ):
            error = _refused(owner, statement, params)
            assert error.sqlstate == SQLSTATE_APPEND_ONLY
            assert "DELETE refused" in str(error)
        error = _refused(owner, "TRUNCATE checkout_events")
        assert error.sqlstate == SQLSTATE_APPEND_ONLY


async def test_the_window_is_the_owners_table_and_a_temporary_one_cannot_stand_in(
    database_url: str, trail: Trail
) -> None:
    old = trail.checkouts[0].id
    prune_sql = (
        "UPDATE checkout_events SET request_body = NULL, response_body = NULL, "
        "detail = orchestrator_pruned_detail(request_body, response_body, detail, now()) "
        "WHERE checkout_id = %s"
    )
    with _owner(database_url) as owner:
        owner.execute("UPDATE audit_retention SET audit_days = 365")
        owner.execute("CREATE TEMP TABLE audit_retention (id boolean, audit_days integer)")
        owner.execute("INSERT INTO audit_retention VALUES (true, 1)")
        error = _refused(owner, prune_sql, (old,))
        assert "inside the retention window of 365 days" in str(error)
        owner.execute("DROP TABLE pg_temp.audit_retention")
        owner.execute("UPDATE audit_retention SET audit_days = 90")
        owner.execute(prune_sql, (old,))  # 100 days old: outside a 90-day window
    # `prune` writes the window it runs with.
    await prune(database_url, older_than_days=120)
    with _owner(database_url) as owner:
        assert owner.execute("SELECT audit_days FROM audit_retention").fetchone() == (120,)


@pytest.mark.parametrize(
    ("change", "old_event"),
    [
        ("body = jsonb_build_object('pruned_at', orchestrator_pruned_stamp(now()))", False),
        ("body = '{}'", True),
        ("body = jsonb_build_object('pruned_at', '2000-01-01T00:00:00Z')", True),
        (
            "body = jsonb_build_object('pruned_at', orchestrator_pruned_stamp(now())), "
            "reason = 'rewritten'",
            True,
        ),
        ("event_id = 'another'", True),
    ],
)
async def test_a_settled_webhook_event_changes_only_by_the_prune(
    database_url: str, trail: Trail, change: str, old_event: bool
) -> None:
    orders = [
        c.violet_order_id for c in (trail.checkouts[:4] if old_event else trail.checkouts[4:])
    ]
    with _owner(database_url) as owner:
        error = _refused(
            owner,
            f"UPDATE webhook_inbox SET {change} WHERE violet_order_id = ANY(%s) "
            "AND state IN ('applied', 'ignored')",
            ([o for o in orders if o is not None],),
        )
    assert error.sqlstate == SQLSTATE_APPEND_ONLY and "is settled" in str(error)


# -- reading a pruned trail -----------------------------------------------------------------------


async def test_timelines_of_pruned_checkouts_render_the_skeleton_and_say_when(
    database_url: str, trail: Trail
) -> None:
    checkout = trail.checkouts[0]
    whole = await _timeline(database_url, checkout.id)
    await prune(database_url, older_than_days=90)
    pruned = await _timeline(database_url, checkout.id)

    assert [(e.seq, e.kind, e.http_path, e.http_status) for e in pruned] == [
        (e.seq, e.kind, e.http_path, e.http_status) for e in whole
    ]
    calls = [e for e in pruned if e.kind == "violet_call" and e.pruned_at is not None]
    assert calls and all(e.request_body is None and e.response_body is None for e in calls)
    today = datetime.now(UTC).date()
    assert all(e.pruned_at is not None and e.pruned_at.date() == today for e in calls)
    assert calls[0].to_json()["pruned_at"].startswith(today.isoformat())
    assert all(e.pruned_at is None for e in whole)

    # The rendered timeline: the same rows (HTTP line, states, errors), and a note saying when.
    assert render.timeline_rows(pruned) == render.timeline_rows(whole)
    note = render.pruned_note(pruned)
    assert note is not None and f"{len(calls)} on {today.isoformat()}" in note
    assert render.pruned_note(whole) is None

    result = await _cli(database_url, "audit", str(checkout.id))
    assert result.exit_code == 0, result.output
    assert f"bodies pruned (retention): {len(calls)} on {today.isoformat()}" in result.output
    assert "POST /checkout/cart -> 200" in result.output
    result = await _cli(database_url, "status", str(checkout.id))
    assert result.exit_code == 0 and checkout.state in result.output


def test_an_event_says_what_was_pruned_and_the_renderer_hides_the_marker() -> None:
    event = AuditEvent.from_mapping(
        {
            "checkout_id": uuid.uuid4(),
            "seq": 3,
            "at": datetime.now(UTC),
            "kind": "reconciled",
            "detail": {
                "decision": "advance",
                "pruned_at": "2026-01-02T03:04:05Z",
                "pruned": ["detail.cart_seen"],
            },
        }
    )
    assert event.pruned_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert event.pruned == ["detail.cart_seen"]
    assert event.detail_kept() == {"decision": "advance"}
    (row,) = render.timeline_rows([event])
    assert row[-1] == "decision=advance (pruned: cart_seen)"


async def _cli(database_url: str, *args: str) -> Any:
    """`orchestrator ARGS` in-process, on a thread of its own (the CLI runs its own loop)."""
    env = {"ORCHESTRATOR_DATABASE_URL": database_url}
    return await asyncio.to_thread(
        CliRunner().invoke, app, list(args), env=env, catch_exceptions=False
    )


async def _timeline(database_url: str, checkout_id: uuid.UUID) -> list[AuditEvent]:
    async with connect(database_url) as runner:
        return await audit.timeline(runner, checkout_id)


def test_the_report_is_json_ready() -> None:
    from orchestrator.store.retention import Pruned

    at = datetime(2026, 1, 1, tzinfo=UTC)
    report = PruneReport(90, at, False, Pruned(3, 900, at, at), Pruned(0, 0, None, None), 1)
    document = report.to_json()
    assert json.loads(json.dumps(document)) == document
    assert document["events"] == {
        "count": 3,
        "bytes": 900,
        "oldest": "2026-01-01T00:00:00Z",
        "newest": "2026-01-01T00:00:00Z",
    }
