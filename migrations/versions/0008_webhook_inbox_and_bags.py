"""Violet's webhooks land in an inbox; each bag of a submitted checkout gets a guarded status.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

`webhook_inbox` is where the receiver (orchestrator/webhooks/receive.py) makes an event durable
before it answers Violet: one INSERT keyed by `X-Violet-Event-Id`, so a redelivery changes
nothing. The events are applied later, by a worker under the checkout's lease; the inbox only
records how each one ended (`pending` -> `applied`, `ignored` or `failed`). The applier claims
pending events in arrival order (`ix_webhook_inbox_pending`, only pending rows: it stays small
however long the history grows) and finds an order's events by `violet_order_id`.

- `received_at` is the database's clock, never the sender's: arrival order is ours to decide.
- `body` is the event's JSON redacted by the one secret specification (orchestrator/sensitive.py)
  and checked by the tripwire (revision 0006's functions), like every other stored document;
  `event_type` and `reason` are checked as text. `event_id` is not: it is an identifier
  authenticated by the signature, and refusing one would lose the event for good (Violet gives
  up after 10 attempts), as `checkouts.app_order_id` is not checked either. Its CHECK bounds it.
- A settled event (`applied`, `ignored`) is frozen: UPDATE refused (23T02), as for finished
  checkouts. A `failed` one may be tried again.

`checkout_bags` holds each bag's last known status with the time the news is from (`status_at`,
the event's or the read-back's time, not ours), the amounts refunded and canceled, and the last
event that moved it. Its legal moves are a frozen copy of orchestrator/bag_states.py in
`checkout_bag_transitions` (a test compares them), enforced by a trigger like the checkout
graph's (0001, 0005): a status change the table does not list is refused with 23T01, whoever
sends it. An insert may take any status: a bag may be first seen at any point of its life
(delivery is unordered; a read-back may come first). The graph table refuses every change
(23T02); the guard reads it by its schema-qualified name, written in when this migration runs,
so a temporary table of the same name cannot stand in for it (see 0005).

A migration is a frozen copy: nothing is imported from the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# -- frozen copy of orchestrator/bag_states.py ---------------------------------------------------

BAG_STATUSES = (
    "IN_PROGRESS",
    "SUBMITTED",
    "ACCEPTED",
    "BACKORDERED",
    "COMPLETED",
    "PARTIALLY_REFUNDED",
    "REFUNDED",
    "CANCELED",
    "REJECTED",
)
_BAG_NEXT = {
    "IN_PROGRESS": ("SUBMITTED", "ACCEPTED", "BACKORDERED", "COMPLETED", "CANCELED", "REJECTED"),
    "SUBMITTED": (
        "ACCEPTED",
        "BACKORDERED",
        "COMPLETED",
        "PARTIALLY_REFUNDED",
        "REFUNDED",
        "CANCELED",
        "REJECTED",
    ),
    "ACCEPTED": ("BACKORDERED", "COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED", "CANCELED"),
    "BACKORDERED": ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED", "CANCELED"),
    "COMPLETED": ("PARTIALLY_REFUNDED", "REFUNDED", "CANCELED"),
    "PARTIALLY_REFUNDED": ("REFUNDED", "CANCELED"),
}
BAG_MOVES = tuple((source, dest) for source, dests in _BAG_NEXT.items() for dest in dests)

INBOX_STATES = ("pending", "applied", "ignored", "failed")
SETTLED_INBOX_STATES = ("applied", "ignored")
# Violet's event ids are short; the bound keeps a hostile header from filling the table.
EVENT_ID_CHECK = "length(event_id) BETWEEN 1 AND 200"
EVENT_TYPE_CHECK = "event_type ~ '^[A-Z0-9_]{1,100}$'"


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    default = sa.text("now()") if now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


# -- guards --------------------------------------------------------------------------------------

_BAG_GUARD = """
CREATE FUNCTION orchestrator_guard_bag_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM {graph} t
        WHERE t.from_status = OLD.status AND t.to_status = NEW.status
    ) THEN
        RAISE EXCEPTION 'illegal bag transition % -> % (bag %)', OLD.status, NEW.status,
            OLD.bag_id USING ERRCODE = '23T01';
    END IF;
    RETURN NEW;
END
$$
"""

_PIN_BAG_GUARD = f"""
DO $migration$
BEGIN
    EXECUTE replace($body${_BAG_GUARD.format(graph="@graph@")}$body$, '@graph@', (
        SELECT format('%I.%I', n.nspname, c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = 'checkout_bag_transitions'::regclass));
END
$migration$
"""

_INBOX_SETTLED_GUARD = """
CREATE FUNCTION orchestrator_guard_settled_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'webhook event % is settled (%): UPDATE refused', OLD.event_id, OLD.state
        USING ERRCODE = '23T02';
END
$$
"""


def _tripwire(table: str, columns: Sequence[tuple[str, str]]) -> str:
    """A tripwire trigger function: each column checked on INSERT and when it changes (plain
    assignments, no PERFORM per check: see 0001)."""
    checks = "".join(
        f"""
        IF TG_OP = 'INSERT' OR NEW.{column} IS DISTINCT FROM OLD.{column} THEN
            finding := orchestrator_secret_in_{kind}(NEW.{column});
            IF finding IS NOT NULL THEN
                PERFORM orchestrator_tripwire_fail('{table}.{column}', finding);
            END IF;
        END IF;"""
        for column, kind in columns
    )
    return f"""
    CREATE FUNCTION orchestrator_tripwire_{table}() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        finding text;
    BEGIN{checks}
        RETURN NEW;
    END
    $$
    """


INBOX_TRIPWIRE_COLUMNS = (("body", "json"), ("event_type", "text"), ("reason", "text"))
BAGS_TRIPWIRE_COLUMNS = (("financial_status", "text"), ("fulfillment_status", "text"))

# Trigger names fire in alphabetical order within a timing: the refusals before the tripwire.
TRIGGERS = (
    """
    CREATE TRIGGER checkout_bag_transitions_fixed
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON checkout_bag_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_refuse_graph_change()
    """,
    """
    CREATE TRIGGER checkout_bags_guard_transition BEFORE UPDATE OF status ON checkout_bags
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION orchestrator_guard_bag_transition()
    """,
    """
    CREATE TRIGGER checkout_bags_tripwire
    BEFORE INSERT OR UPDATE OF financial_status, fulfillment_status ON checkout_bags
    FOR EACH ROW EXECUTE FUNCTION orchestrator_tripwire_checkout_bags()
    """,
    f"""
    CREATE TRIGGER webhook_inbox_keep_settled BEFORE UPDATE ON webhook_inbox
    FOR EACH ROW WHEN (OLD.state IN ({", ".join(repr(s) for s in SETTLED_INBOX_STATES)}))
    EXECUTE FUNCTION orchestrator_guard_settled_event()
    """,
    """
    CREATE TRIGGER webhook_inbox_tripwire
    BEFORE INSERT OR UPDATE OF body, event_type, reason ON webhook_inbox
    FOR EACH ROW EXECUTE FUNCTION orchestrator_tripwire_webhook_inbox()
    """,
)


def _create_inbox() -> None:
    op.create_table(
        "webhook_inbox",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("body", postgresql.JSONB(), nullable=False),
        sa.Column("violet_order_id", sa.BigInteger(), nullable=True),
        sa.Column("bag_id", sa.BigInteger(), nullable=True),
        sa.Column("merchant_id", sa.BigInteger(), nullable=True),
        _ts("received_at", nullable=False, now=True),
        sa.Column("state", sa.Text(), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        _ts("applied_at"),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_webhook_inbox")),
        sa.CheckConstraint(_in("state", INBOX_STATES), name=op.f("ck_webhook_inbox_state")),
        sa.CheckConstraint(EVENT_ID_CHECK, name=op.f("ck_webhook_inbox_event_id")),
        sa.CheckConstraint(EVENT_TYPE_CHECK, name=op.f("ck_webhook_inbox_event_type")),
    )
    op.create_index(
        "ix_webhook_inbox_pending",
        "webhook_inbox",
        ["received_at"],
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "ix_webhook_inbox_violet_order_id",
        "webhook_inbox",
        ["violet_order_id", "received_at"],
        postgresql_where=sa.text("violet_order_id IS NOT NULL"),
    )


def _create_bags() -> None:
    graph = op.create_table(
        "checkout_bag_transitions",
        sa.Column("from_status", sa.Text(), nullable=False),
        sa.Column("to_status", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "from_status", "to_status", name=op.f("pk_checkout_bag_transitions")
        ),
    )
    op.bulk_insert(graph, [{"from_status": f, "to_status": t} for f, t in BAG_MOVES])
    zero = sa.text("0")
    op.create_table(
        "checkout_bags",
        sa.Column("checkout_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("bag_id", sa.BigInteger(), nullable=False),
        sa.Column("merchant_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        _ts("status_at", nullable=False),
        sa.Column("financial_status", sa.Text(), nullable=True),
        sa.Column("fulfillment_status", sa.Text(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False, server_default=zero),
        sa.Column("canceled_amount", sa.BigInteger(), nullable=False, server_default=zero),
        sa.Column("last_event_id", sa.Text(), nullable=True),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("checkout_id", "bag_id", name=op.f("pk_checkout_bags")),
        sa.ForeignKeyConstraint(
            ["checkout_id"], ["checkouts.id"], name=op.f("fk_checkout_bags_checkout_id_checkouts")
        ),
        sa.CheckConstraint(_in("status", BAG_STATUSES), name=op.f("ck_checkout_bags_status")),
        sa.CheckConstraint(
            "currency IS NULL OR currency ~ '^[A-Z]{3}$'", name=op.f("ck_checkout_bags_currency")
        ),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND canceled_amount >= 0", name=op.f("ck_checkout_bags_amounts")
        ),
    )
    # An event names a bag, not its checkout: find the bag without knowing the checkout.
    op.create_index("ix_checkout_bags_bag_id", "checkout_bags", ["bag_id"])


def upgrade() -> None:
    _create_inbox()
    _create_bags()
    for statement in (
        _PIN_BAG_GUARD,
        _INBOX_SETTLED_GUARD,
        _tripwire("webhook_inbox", INBOX_TRIPWIRE_COLUMNS),
        _tripwire("checkout_bags", BAGS_TRIPWIRE_COLUMNS),
        *TRIGGERS,
    ):
        op.execute(statement)


def downgrade() -> None:
    # Dropping a table drops its triggers; DROP is neither DELETE nor TRUNCATE: the guard allows it.
    for table in ("checkout_bags", "checkout_bag_transitions", "webhook_inbox"):
        op.drop_table(table)
    for function in (
        "orchestrator_tripwire_checkout_bags()",
        "orchestrator_tripwire_webhook_inbox()",
        "orchestrator_guard_settled_event()",
        "orchestrator_guard_bag_transition()",
    ):
        op.execute(f"DROP FUNCTION {function}")
