"""Initial schema: checkouts, their audit trail and checkpoints, the state graph and its guards.

Revision ID: 0001
Revises:
Create Date: 2024-11-22

A migration is a snapshot: the legal transitions and the guard functions are frozen copies here,
never imported from the application (a test compares the seeded graph with orchestrator.machine).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = (
    "new",
    "created",
    "customer_applied",
    "shipping_applied",
    "paid",
    "awaiting_payment",
    "awaiting_confirmation",
    "priced",
    "requires_action",
    "submitted",
    "failed",
    "canceled",
)
NON_TERMINAL = tuple(s for s in STATES if s not in ("submitted", "failed", "canceled"))

TRANSITIONS: tuple[tuple[str, str, str], ...] = (
    ("new", "created", "create_cart"),
    ("created", "customer_applied", "apply_customer"),
    ("customer_applied", "shipping_applied", "apply_shipping"),
    ("customer_applied", "paid", "apply_payment"),
    ("shipping_applied", "paid", "apply_payment"),
    ("customer_applied", "awaiting_confirmation", "request_confirmation"),
    ("shipping_applied", "awaiting_confirmation", "request_confirmation"),
    ("customer_applied", "awaiting_payment", "need_payment"),
    ("shipping_applied", "awaiting_payment", "need_payment"),
    ("awaiting_payment", "paid", "provide_payment"),
    ("awaiting_confirmation", "paid", "confirm"),
    ("paid", "priced", "price"),
    ("priced", "submitted", "submit"),
    ("priced", "requires_action", "require_action"),
    ("requires_action", "priced", "confirm"),
    *((state, "failed", "fail") for state in NON_TERMINAL),
    *((state, "canceled", "cancel") for state in NON_TERMINAL),
)

# Keys whose value must be the redaction marker wherever they appear in stored JSON.
SECRET_KEYS = (
    "card_number",
    "card_cvc",
    "cvc",
    "cvv",
    "password",
    "app_secret",
    "refresh_token",
    "client_secret",
    "payment_intent_client_secret",
)
_KEY_LIST = ", ".join(f"'{key}'" for key in SECRET_KEYS)
# In lower-cased jsonb text with `": "[redacted]"`, `": null` and `": ""` removed (exact: quotes
# inside strings are escaped), a secret key still followed by `": ` has some other value.
_SUSPECT_KEY_TESTS = "\n           AND ".join(
    f"strpos(stripped, '\"{key}\": ') = 0" for key in SECRET_KEYS
)


def _tripwire_trigger_function(
    table: str, columns: list[tuple[str, str]], *, only_changed: bool = False
) -> str:
    """A trigger function checking each column with plain assignments (no PERFORM: each one
    would be a full SPI query, several times the cost of the check on the hot insert path)."""
    checks = []
    for column, kind in columns:
        check = f"""
        finding := orchestrator_secret_in_{kind}(NEW.{column});
        IF finding IS NOT NULL THEN
            PERFORM orchestrator_tripwire_fail('{table}.{column}', finding);
        END IF;"""
        if only_changed:
            check = f"""
        IF TG_OP = 'INSERT' OR NEW.{column} IS DISTINCT FROM OLD.{column} THEN{check}
        END IF;"""
        checks.append(check)
    return f"""
    CREATE FUNCTION orchestrator_tripwire_{table}() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        finding text;
    BEGIN{"".join(checks)}
        RETURN NEW;
    END
    $$
    """


# Separate statements: one DDL command per op.execute keeps error positions readable.
GUARD_FUNCTIONS = (
    # -- the state graph ---------------------------------------------------------------------
    """
    CREATE FUNCTION orchestrator_guard_transition() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT EXISTS (
            SELECT 1 FROM checkout_state_transitions t
            WHERE t.from_state = OLD.state AND t.to_state = NEW.state
        ) THEN
            RAISE EXCEPTION 'illegal checkout transition % -> %', OLD.state, NEW.state
                USING ERRCODE = '23T01';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE FUNCTION orchestrator_guard_insert_state() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'illegal checkout transition (insert) -> %: a checkout starts in state new',
            NEW.state USING ERRCODE = '23T01';
    END
    $$
    """,
    # -- the append-only audit trail -----------------------------------------------------------
    """
    CREATE FUNCTION orchestrator_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only: % refused (the audit trail is kept forever)',
            TG_TABLE_NAME, TG_OP USING ERRCODE = '23T02';
    END
    $$
    """,
    # -- the tripwire --------------------------------------------------------------------------
    """
    CREATE FUNCTION orchestrator_luhn_valid(digits text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
    DECLARE
        n integer := length(digits);
        total integer := 0;
        d integer;
    BEGIN
        FOR i IN 0 .. n - 1 LOOP
            d := ascii(substr(digits, n - i, 1)) - 48;
            IF i % 2 = 1 THEN
                d := d * 2;
                IF d > 9 THEN
                    d := d - 9;
                END IF;
            END IF;
            total := total + d;
        END LOOP;
        RETURN total % 10 = 0;
    END
    $$
    """,
    # A "run" is digits joined by single spaces or dashes, not glued to other digits and not
    # dash-joined to a hex group (so UUIDs never match). Any consecutive groups of a run adding
    # up to 13-19 digits are checked, which catches "4242 4242 4242 4242 123" too.
    r"""
    CREATE FUNCTION orchestrator_find_card_number(doc text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
    DECLARE
        run text;
        groups text[];
        digits text;
    BEGIN
        IF doc !~ '[0-9](?:[ -]?[0-9]){12}' THEN
            RETURN NULL;  -- the common case: no run of 13+ digits at all
        END IF;
        FOR run IN
            SELECT m[1] FROM regexp_matches(
                doc,
                '(?<![0-9])(?<![0-9A-Fa-f]-)([0-9]+(?:[ -][0-9]+)*)(?![0-9])(?!-[0-9A-Fa-f])',
                'g') AS m
        LOOP
            CONTINUE WHEN length(run) < 13;
            groups := string_to_array(translate(run, '-', ' '), ' ');
            FOR i IN 1 .. cardinality(groups) LOOP
                digits := '';
                FOR j IN i .. cardinality(groups) LOOP
                    digits := digits || groups[j];
                    EXIT WHEN length(digits) > 19;
                    IF length(digits) >= 13 AND orchestrator_luhn_valid(digits) THEN
                        RETURN format('a Luhn-valid %s-digit number (a card number?)',
                                      length(digits));
                    END IF;
                END LOOP;
            END LOOP;
        END LOOP;
        RETURN NULL;
    END
    $$
    """,
    r"""
    CREATE FUNCTION orchestrator_secret_in_text(doc text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
    DECLARE
        finding text := orchestrator_find_card_number(doc);
    BEGIN
        IF finding IS NOT NULL THEN
            RETURN finding;
        END IF;
        IF strpos(lower(doc), '_secret_') > 0 THEN
            RETURN 'a string containing "_secret_" (a client secret?)';
        END IF;
        IF doc ~* 'x-violet-[a-z0-9-]+\s*[:=]\s*\S' THEN
            RETURN 'an X-Violet-* header with its value';
        END IF;
        RETURN NULL;
    END
    $$
    """,
    rf"""
    CREATE FUNCTION orchestrator_secret_in_json(doc jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
    DECLARE
        doc_text text := doc::text;
        lowered text := lower(doc_text);
        finding text := orchestrator_find_card_number(doc_text);
        stripped text;
        k text;
        v jsonb;
    BEGIN
        IF finding IS NOT NULL THEN
            RETURN finding;
        END IF;
        IF strpos(lowered, '_secret_') > 0 THEN
            RETURN 'a string containing "_secret_" (a client secret?)';
        END IF;
        -- Plain substring tests (a regex would cost ~10 us even on a short body) keep redacted
        -- bodies off the walk below; jsonb renders every key as "key": so none can hide.
        stripped := replace(replace(replace(lowered, '": "[redacted]"', ''), '": null', ''),
                            '": ""', '');
        IF {_SUSPECT_KEY_TESTS}
           AND strpos(stripped, '"x-violet-') = 0 THEN
            RETURN NULL;
        END IF;
        FOR k, v IN
            SELECT e.key, e.value
            FROM jsonb_path_query(doc, 'strict $.** ? (@.type() == "object")') AS o(obj),
                 jsonb_each(o.obj) AS e
        LOOP
            IF lower(k) LIKE 'x-violet-%' THEN
                RETURN format('an X-Violet-* header key %s', quote_literal(left(k, 64)));
            END IF;
            IF lower(k) IN ({_KEY_LIST})
               AND v <> 'null'::jsonb
               AND upper(v #>> '{{}}') NOT IN ('[REDACTED]', '')
               AND NOT (lower(k) = 'card_number' AND jsonb_typeof(v) = 'string'
                        AND v #>> '{{}}' ~ '^[*xX -]*[0-9]{{0,4}}$')
            THEN
                RETURN format('a key %s whose value is not "[REDACTED]"', quote_literal(lower(k)));
            END IF;
        END LOOP;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE FUNCTION orchestrator_tripwire_fail(what text, finding text) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'tripwire: % holds %; store a redacted summary instead', what, finding
            USING ERRCODE = '23T03';
    END
    $$
    """,
    _tripwire_trigger_function(
        "checkouts",
        [("request", "json"), ("bags", "json"), ("last_error", "json")],
        only_changed=True,
    ),
    _tripwire_trigger_function(
        "checkout_events",
        [
            ("request_body", "json"),
            ("response_body", "json"),
            ("detail", "json"),
            ("error_message", "text"),
        ],
    ),
    _tripwire_trigger_function("checkout_steps", [("result", "json")]),
)

# Trigger names fire in alphabetical order within a timing: the refusals come before the tripwire.
TRIGGERS = (
    """
    CREATE TRIGGER checkouts_guard_insert_state BEFORE INSERT ON checkouts
    FOR EACH ROW WHEN (NEW.state IS DISTINCT FROM 'new')
    EXECUTE FUNCTION orchestrator_guard_insert_state()
    """,
    """
    CREATE TRIGGER checkouts_guard_transition BEFORE UPDATE OF state ON checkouts
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION orchestrator_guard_transition()
    """,
    """
    CREATE TRIGGER checkouts_tripwire BEFORE INSERT OR UPDATE OF request, bags, last_error
    ON checkouts FOR EACH ROW EXECUTE FUNCTION orchestrator_tripwire_checkouts()
    """,
    """
    CREATE TRIGGER checkout_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON checkout_events FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_refuse_change()
    """,
    """
    CREATE TRIGGER checkout_events_tripwire BEFORE INSERT OR UPDATE ON checkout_events
    FOR EACH ROW EXECUTE FUNCTION orchestrator_tripwire_checkout_events()
    """,
    """
    CREATE TRIGGER checkout_steps_tripwire BEFORE INSERT OR UPDATE OF result ON checkout_steps
    FOR EACH ROW EXECUTE FUNCTION orchestrator_tripwire_checkout_steps()
    """,
)

DROP_FUNCTIONS = (
    "orchestrator_tripwire_checkout_steps()",
    "orchestrator_tripwire_checkout_events()",
    "orchestrator_tripwire_checkouts()",
    "orchestrator_tripwire_fail(text, text)",
    "orchestrator_secret_in_json(jsonb)",
    "orchestrator_secret_in_text(text)",
    "orchestrator_find_card_number(text)",
    "orchestrator_luhn_valid(text)",
    "orchestrator_refuse_change()",
    "orchestrator_guard_insert_state()",
    "orchestrator_guard_transition()",
)


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    default = sa.text("now()") if now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def upgrade() -> None:
    zero = sa.text("0")
    op.create_table(
        "checkouts",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("app_order_id", sa.Text(), nullable=False),
        sa.Column("violet_order_id", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("pending_step", sa.Text(), nullable=True),
        sa.Column("in_flight", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("step_no", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default=zero),
        _ts("next_attempt_at"),
        _ts("step_started_at"),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        _ts("lease_expires_at"),
        sa.Column("lease_epoch", sa.BigInteger(), nullable=False, server_default=zero),
        sa.Column("recoveries", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("event_seq", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("request", postgresql.JSONB(), nullable=False),
        sa.Column("payment_kind", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("sub_total", sa.BigInteger(), nullable=True),
        sa.Column("shipping_total", sa.BigInteger(), nullable=True),
        sa.Column("tax_total", sa.BigInteger(), nullable=True),
        sa.Column("discount_total", sa.BigInteger(), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column(
            "bags", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")
        ),
        sa.Column("violet_status", sa.Text(), nullable=True),
        sa.Column("waiting_reason", sa.Text(), nullable=True),
        sa.Column("last_error", postgresql.JSONB(), nullable=True),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
        _ts("finished_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkouts")),
        sa.UniqueConstraint("app_order_id", name=op.f("uq_checkouts_app_order_id")),
        sa.UniqueConstraint("violet_order_id", name=op.f("uq_checkouts_violet_order_id")),
        sa.CheckConstraint(_in("state", STATES), name=op.f("ck_checkouts_state")),
        sa.CheckConstraint(
            _in("payment_kind", ("card", "token", "intent")), name=op.f("ck_checkouts_payment_kind")
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_checkouts_currency")),
        sa.CheckConstraint(
            "jsonb_typeof(request) = 'object'", name=op.f("ck_checkouts_request_object")
        ),
        sa.CheckConstraint("jsonb_typeof(bags) = 'array'", name=op.f("ck_checkouts_bags_array")),
        sa.CheckConstraint(
            "last_error IS NULL OR jsonb_typeof(last_error) = 'object'",
            name=op.f("ck_checkouts_last_error_object"),
        ),
    )
    op.create_index(
        "ix_checkouts_due",
        "checkouts",
        ["next_attempt_at"],
        postgresql_where=sa.text("next_attempt_at IS NOT NULL"),
    )
    op.create_index(
        "ix_checkouts_state_created_at", "checkouts", ["state", sa.text("created_at DESC")]
    )
    op.create_index("ix_checkouts_created_at", "checkouts", [sa.text("created_at DESC")])
    op.create_index(
        "ix_checkouts_last_error_type",
        "checkouts",
        [sa.text("(last_error ->> 'type')")],
        postgresql_where=sa.text("last_error IS NOT NULL"),
    )

    op.create_table(
        "checkout_events",
        sa.Column("checkout_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _ts("at", nullable=False, now=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=True),
        sa.Column("step", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("http_method", sa.Text(), nullable=True),
        sa.Column("http_path", sa.Text(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("latency_ms", postgresql.REAL(), nullable=True),
        sa.Column("request_body", postgresql.JSONB(), nullable=True),
        sa.Column("response_body", postgresql.JSONB(), nullable=True),
        sa.Column("error_class", sa.Text(), nullable=True),
        sa.Column("error_type", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("detail", postgresql.JSONB(), nullable=True),
        sa.PrimaryKeyConstraint("checkout_id", "seq", name=op.f("pk_checkout_events")),
        sa.ForeignKeyConstraint(
            ["checkout_id"], ["checkouts.id"], name=op.f("fk_checkout_events_checkout_id_checkouts")
        ),
    )
    op.create_index("ix_checkout_events_at", "checkout_events", ["at"], postgresql_using="brin")

    op.create_table(
        "checkout_steps",
        sa.Column("checkout_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("step_no", sa.Integer(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=False, now=True),
        sa.Column("result", postgresql.JSONB(), nullable=True),
        sa.PrimaryKeyConstraint("checkout_id", "step_no", name=op.f("pk_checkout_steps")),
        sa.ForeignKeyConstraint(
            ["checkout_id"], ["checkouts.id"], name=op.f("fk_checkout_steps_checkout_id_checkouts")
        ),
        sa.CheckConstraint(
            _in("outcome", ("done", "failed", "unknown", "reconciled", "waiting", "retry")),
            name=op.f("ck_checkout_steps_outcome"),
        ),
    )

    transitions = op.create_table(
        "checkout_state_transitions",
        sa.Column("from_state", sa.Text(), nullable=False),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "from_state", "to_state", name=op.f("pk_checkout_state_transitions")
        ),
    )
    op.bulk_insert(
        transitions,
        [{"from_state": f, "to_state": t, "trigger": trig} for f, t, trig in TRANSITIONS],
    )

    op.create_table(
        "violet_throttle",
        sa.Column("key", sa.Text(), nullable=False),
        _ts("blocked_until", nullable=False),
        _ts("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_violet_throttle")),
    )

    for statement in (*GUARD_FUNCTIONS, *TRIGGERS):
        op.execute(statement)


def downgrade() -> None:
    # Dropping a table drops its triggers; DROP is neither DELETE nor TRUNCATE: the guard allows it.
    for table in (
        "violet_throttle",
        "checkout_state_transitions",
        "checkout_steps",
        "checkout_events",
        "checkouts",
    ):
        op.drop_table(table)
    for signature in DROP_FUNCTIONS:
        op.execute(f"DROP FUNCTION {signature}")
