"""The order's life after submit: its lease and news on the finished row, actions, the changes feed.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

A submitted checkout is finished for the checkout machine, but its bags live on (design §10), and
what happens to them is done under the same lease as the checkout path, so the two never race:
- A finished checkout may change these columns, and no other (0005's `ALLOWED_AFTER_FINISH`):
  the lease (`lease_owner`, `lease_expires_at`, `lease_epoch`, `version`) taken to apply a
  webhook, read a bag back or send a cancel or refund; `event_seq`, because each of those is
  recorded in the checkout's audit trail; `violet_status` and `updated_at`, because the order's
  status read back or notified is recorded when it is known. The state, the totals, the Violet
  ids, `bags` (the cart's bags at submit; their live status is `checkout_bags`) stay frozen.
- `bag_actions` holds each cancel or refund a caller asked for, as a durable intent before the
  request leaves. Both are non-idempotent and Violet answers 202 whether they worked or not, so an
  action is sent at most once: `requested` (written, not sent) -> `sent` (left, outcome unknown
  until a webhook or a read settles it) -> `succeeded` or `failed`; `requested` may also go
  straight to `failed` (refused before sending). At most one open action per bag (a partial
  unique index), settled actions are frozen, and the moves are enforced here (23T01), whoever
  writes. `send_by` is the database-clock bound after which the request must not leave (the
  send gate of the checkout steps, revision 0007).
- `checkout_changes` is the feed a host follows: one row per change it acts on (a checkout
  finished or waiting for input, a bag's status, an action settled), appended in the transaction
  that made the change; `id` is its stable id. Ids are taken before commit, so a reader advancing
  by id alone could pass a row committed late with a smaller id. Each row records its
  transaction (`txid`), and a reader orders by `(txid, id)` and takes only rows whose transaction
  is older than every transaction still running (`pg_snapshot_xmin(pg_current_snapshot())`):
  every such transaction has ended, and any row still to come has a larger `txid`, so a cursor
  on `(txid, id)` never passes a row it has not seen. A row trigger NOTIFYs
  `orchestrator_changes` so a follower can wait instead of polling: per row, because a statement
  trigger fires for a statement that appends nothing (every step write carries an append that
  is empty unless the checkout finished or started waiting), and PostgreSQL folds a
  transaction's identical notifications into one. The feed is append-only.

Text and JSON columns pass the secret tripwire (revision 0006's functions).
A migration is a frozen copy: nothing is imported from the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TERMINAL = ("submitted", "failed", "canceled")
ALLOWED_AFTER_FINISH: tuple[str, ...] = (
    "lease_owner",
    "lease_expires_at",
    "lease_epoch",
    "version",
    "event_seq",
    "violet_status",
    "updated_at",
)

ACTION_KINDS = ("cancel", "refund")
ACTION_STATES = ("requested", "sent", "succeeded", "failed")
OPEN_ACTION_STATES = ("requested", "sent")
ACTION_MOVES = (
    ("requested", "sent"),
    ("requested", "failed"),
    ("sent", "succeeded"),
    ("sent", "failed"),
)

CHANGES_CHANNEL = "orchestrator_changes"


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    default = sa.text("now()") if now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def _finished_guard(allowed: Sequence[str]) -> str:
    allowed_sql = ", ".join(f"'{column}'" for column in allowed)
    return f"""
CREATE OR REPLACE FUNCTION orchestrator_guard_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb := to_jsonb(OLD);
    changed text;
BEGIN
    SELECT string_agg(n.key, ', ' ORDER BY n.key) INTO changed
    FROM jsonb_each(to_jsonb(NEW)) AS n
    WHERE n.value IS DISTINCT FROM old_row -> n.key
      AND n.key <> ALL (ARRAY[{allowed_sql}]::text[]);
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'checkout % is finished (%): its row is kept as it is; UPDATE of % refused',
            OLD.id, OLD.state, changed USING ERRCODE = '23T02';
    END IF;
    RETURN NEW;
END
$$
"""


_ACTION_MOVES_SQL = " OR ".join(
    f"(OLD.state = '{source}' AND NEW.state = '{dest}')" for source, dest in ACTION_MOVES
)

# Same-state updates of an open action are allowed (its answer or error recorded while it stays
# `sent`); a settled action is frozen whatever changes.
_ACTION_GUARD = f"""
CREATE FUNCTION orchestrator_guard_bag_action() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state NOT IN ({", ".join(repr(s) for s in OPEN_ACTION_STATES)}) THEN
        RAISE EXCEPTION 'bag action % is settled (%): UPDATE refused', OLD.id, OLD.state
            USING ERRCODE = '23T02';
    END IF;
    IF NEW.state IS DISTINCT FROM OLD.state AND NOT ({_ACTION_MOVES_SQL}) THEN
        RAISE EXCEPTION 'illegal bag action transition % -> % (action %)',
            OLD.state, NEW.state, OLD.id USING ERRCODE = '23T01';
    END IF;
    RETURN NEW;
END
$$
"""

_NOTIFY_CHANGES = f"""
CREATE FUNCTION orchestrator_notify_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANGES_CHANNEL}', '');
    RETURN NULL;
END
$$
"""


def _tripwire(table: str, columns: Sequence[tuple[str, str]]) -> str:
    """A tripwire trigger function: each column checked on INSERT and when it changes."""
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


ACTIONS_TRIPWIRE_COLUMNS = (
    ("reason", "text"),
    ("actor", "text"),
    ("skus", "json"),
    ("answer", "json"),
    ("error", "json"),
)
CHANGES_TRIPWIRE_COLUMNS = (("kind", "text"), ("detail", "json"))

TRIGGERS = (
    """
    CREATE TRIGGER bag_actions_guard BEFORE UPDATE ON bag_actions
    FOR EACH ROW EXECUTE FUNCTION orchestrator_guard_bag_action()
    """,
    """
    CREATE TRIGGER bag_actions_tripwire
    BEFORE INSERT OR UPDATE OF reason, actor, skus, answer, error ON bag_actions
    FOR EACH ROW EXECUTE FUNCTION orchestrator_tripwire_bag_actions()
    """,
    """
    CREATE TRIGGER checkout_changes_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON checkout_changes FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_refuse_change()
    """,
    """
    CREATE TRIGGER checkout_changes_notify AFTER INSERT ON checkout_changes
    FOR EACH ROW EXECUTE FUNCTION orchestrator_notify_changes()
    """,
    """
    CREATE TRIGGER checkout_changes_tripwire BEFORE INSERT ON checkout_changes
    FOR EACH ROW EXECUTE FUNCTION orchestrator_tripwire_checkout_changes()
    """,
)


def _create_actions() -> None:
    op.create_table(
        "bag_actions",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("checkout_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("bag_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False, server_default=sa.text("'requested'")),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("skus", postgresql.JSONB(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        _ts("requested_at", nullable=False, now=True),
        _ts("sent_at"),
        _ts("send_by"),
        _ts("settled_at"),
        sa.Column("answer", postgresql.JSONB(), nullable=True),
        sa.Column("error", postgresql.JSONB(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bag_actions")),
        sa.ForeignKeyConstraint(
            ["checkout_id"], ["checkouts.id"], name=op.f("fk_bag_actions_checkout_id_checkouts")
        ),
        sa.CheckConstraint(_in("kind", ACTION_KINDS), name=op.f("ck_bag_actions_kind")),
        sa.CheckConstraint(_in("state", ACTION_STATES), name=op.f("ck_bag_actions_state")),
        sa.CheckConstraint("amount IS NULL OR amount > 0", name=op.f("ck_bag_actions_amount")),
        sa.CheckConstraint("length(actor) BETWEEN 1 AND 200", name=op.f("ck_bag_actions_actor")),
    )
    op.create_index(
        "ux_bag_actions_one_open_per_bag",
        "bag_actions",
        ["checkout_id", "bag_id"],
        unique=True,
        postgresql_where=sa.text(_in("state", OPEN_ACTION_STATES)),
    )
    op.create_index("ix_bag_actions_checkout_id", "bag_actions", ["checkout_id", "requested_at"])


# Raw DDL: `xid8` (the committing transaction id, 64-bit: it never wraps) has no SQLAlchemy type.
_CREATE_CHANGES = """
CREATE TABLE checkout_changes (
    id bigint GENERATED ALWAYS AS IDENTITY,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    at timestamptz NOT NULL DEFAULT now(),
    checkout_id uuid NOT NULL,
    app_order_id text,
    kind text NOT NULL,
    detail jsonb,
    CONSTRAINT pk_checkout_changes PRIMARY KEY (id),
    CONSTRAINT ck_checkout_changes_kind CHECK (kind ~ '^[a-z_]{1,50}$')
)
"""


def _create_changes() -> None:
    op.execute(_CREATE_CHANGES)
    op.create_index("ix_checkout_changes_checkout_id", "checkout_changes", ["checkout_id", "id"])
    op.create_index("ix_checkout_changes_txid", "checkout_changes", ["txid", "id"])


def upgrade() -> None:
    op.execute(_finished_guard(ALLOWED_AFTER_FINISH))
    _create_actions()
    _create_changes()
    for statement in (
        _ACTION_GUARD,
        _NOTIFY_CHANGES,
        _tripwire("bag_actions", ACTIONS_TRIPWIRE_COLUMNS),
        _tripwire("checkout_changes", CHANGES_TRIPWIRE_COLUMNS),
        *TRIGGERS,
    ):
        op.execute(statement)


def downgrade() -> None:
    for table in ("checkout_changes", "bag_actions"):
        op.drop_table(table)
    for function in (
        "orchestrator_tripwire_checkout_changes()",
        "orchestrator_tripwire_bag_actions()",
        "orchestrator_notify_changes()",
        "orchestrator_guard_bag_action()",
    ):
        op.execute(f"DROP FUNCTION {function}")
    op.execute(_finished_guard(()))
