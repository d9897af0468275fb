"""Drop `checkout_steps`: the audit trail already holds what its rows said.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

Every step write appended a checkpoint row (step number, step, attempt, outcome, start, finish,
a redacted result), and nothing ever read one: a resumed checkout reads its row, which holds the
step in flight and its start. The audit trail of the same write already says the rest: the
step's start is its `step_started` event, its end and outcome the `transition`, `waiting`,
`retry_scheduled` or `error` events, each with its time (`at`). The two things only a checkpoint
kept go into events instead: the cart a step ended with into its `transition` event's `detail`
(`cart`), and the parts of an error summary without a column of their own (a decline's Violet
type and code, the failed probes counted) into its `error` event's `detail`. Each step write now
inserts one row fewer (and runs one tripwire trigger fewer).

Downgrade recreates the table as revisions 0001, 0003 and 0005 left it (no foreign key, its
tripwire, append-only), empty; `orchestrator db grants` gives the application role its
privileges on it again.
A migration is a frozen copy: nothing is imported from the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOMES = ("done", "failed", "unknown", "reconciled", "waiting", "retry")

TRIPWIRE_FUNCTION = """
    CREATE FUNCTION orchestrator_tripwire_checkout_steps() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        finding text;
    BEGIN
        finding := orchestrator_secret_in_json(NEW.result);
        IF finding IS NOT NULL THEN
            PERFORM orchestrator_tripwire_fail('checkout_steps.result', finding);
        END IF;
        RETURN NEW;
    END
    $$
    """

TRIGGERS = (
    """
    CREATE TRIGGER checkout_steps_tripwire BEFORE INSERT OR UPDATE OF result ON checkout_steps
    FOR EACH ROW EXECUTE FUNCTION orchestrator_tripwire_checkout_steps()
    """,
    """
    CREATE TRIGGER checkout_steps_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON checkout_steps FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_refuse_change()
    """,
)


def upgrade() -> None:
    # Dropping a table drops its triggers; DROP is neither DELETE nor TRUNCATE: the guard allows it.
    op.drop_table("checkout_steps")
    op.execute("DROP FUNCTION orchestrator_tripwire_checkout_steps()")


def _timestamp(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    default = sa.text("now()") if now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def downgrade() -> None:
    outcomes = ", ".join(f"'{outcome}'" for outcome in OUTCOMES)
    op.create_table(
        "checkout_steps",
        sa.Column("checkout_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("step_no", sa.Integer(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at", nullable=False, now=True),
        sa.Column("result", postgresql.JSONB(), nullable=True),
        sa.PrimaryKeyConstraint("checkout_id", "step_no", name=op.f("pk_checkout_steps")),
        sa.CheckConstraint(f"outcome IN ({outcomes})", name=op.f("ck_checkout_steps_outcome")),
    )
    for statement in (TRIPWIRE_FUNCTION, *TRIGGERS):
        op.execute(statement)
