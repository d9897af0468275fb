"""Guard what the application's own role could still rewrite: the graph, checkpoints, finished rows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

The application and the recovery job run as a role that may INSERT and UPDATE (docs/operations.md,
`orchestrator db grants`), so the rules that keep history true are triggers owned by the table
owner, which that role cannot disable or drop:

- `checkout_state_transitions` refuses INSERT, UPDATE, DELETE and TRUNCATE: a row added there would
  make any move legal. A later migration that changes the graph drops the trigger
  `checkout_state_transitions_fixed`, changes the rows and creates the trigger again, all in its
  own transaction (DDL is transactional in PostgreSQL: nobody ever sees the table unguarded).
- `checkout_steps` is append-only, like `checkout_events`: UPDATE, DELETE, TRUNCATE refused. The
  code only ever inserts checkpoints (one per step write, never ON CONFLICT).
- A finished checkout (submitted, failed, canceled) is frozen: an UPDATE that changes any column of
  such a row is refused (its move out of the terminal state is already refused by the transition
  guard). No column needs to change after the terminal write: that write itself releases the
  lease, sets `finished_at`/`updated_at` and records the final Violet status (a cancel's released
  cart included); claims, lease renewals and `verify` never touch a finished row. A column that
  must later change goes into `ALLOWED_AFTER_FINISH` of a new migration, with its reason.
- The transition guard reads the graph through its schema-qualified name, so a temporary table of
  the same name (any role may create one, and `pg_temp` is searched first) cannot stand in for it.

All three refusals use SQLSTATE 23T02 (history is append-only), as the audit trail's guard does.
A migration is a frozen copy: nothing is imported from the application.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TERMINAL = ("submitted", "failed", "canceled")

# Columns of a finished checkout that may still change. None: see the module docstring.
ALLOWED_AFTER_FINISH: tuple[str, ...] = ()

_TERMINAL_SQL = ", ".join(f"'{state}'" for state in TERMINAL)
_ALLOWED_SQL = ", ".join(f"'{column}'" for column in ALLOWED_AFTER_FINISH)

_GRAPH_GUARD = """
CREATE FUNCTION orchestrator_refuse_graph_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is fixed by the migrations: % refused (a new graph is a new migration)',
        TG_TABLE_NAME, TG_OP USING ERRCODE = '23T02';
END
$$
"""

# Only reached for rows whose old state is terminal (the trigger's WHEN), so the step writes of
# open checkouts pay nothing but that test. Column names go in the message, never values.
_FINISHED_GUARD = f"""
CREATE FUNCTION orchestrator_guard_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb := to_jsonb(OLD);
    changed text;
BEGIN
    SELECT string_agg(n.key, ', ' ORDER BY n.key) INTO changed
    FROM jsonb_each(to_jsonb(NEW)) AS n
    WHERE n.value IS DISTINCT FROM old_row -> n.key
      AND n.key <> ALL (ARRAY[{_ALLOWED_SQL}]::text[]);
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'checkout % is finished (%): its row is kept as it is; UPDATE of % refused',
            OLD.id, OLD.state, changed USING ERRCODE = '23T02';
    END IF;
    RETURN NEW;
END
$$
"""

# Trigger names fire in alphabetical order: `checkouts_guard_transition` (23T01 for a move out
# of a terminal state) comes before `checkouts_keep_finished`.
TRIGGERS = (
    """
    CREATE TRIGGER checkout_state_transitions_fixed
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON checkout_state_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_refuse_graph_change()
    """,
    """
    CREATE TRIGGER checkout_steps_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON checkout_steps FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_refuse_change()
    """,
    f"""
    CREATE TRIGGER checkouts_keep_finished BEFORE UPDATE ON checkouts
    FOR EACH ROW WHEN (OLD.state IN ({_TERMINAL_SQL}))
    EXECUTE FUNCTION orchestrator_guard_finished()
    """,
)

_TRANSITION_GUARD = """
CREATE OR REPLACE FUNCTION orchestrator_guard_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM {graph} t
        WHERE t.from_state = OLD.state AND t.to_state = NEW.state
    ) THEN
        RAISE EXCEPTION 'illegal checkout transition % -> %', OLD.state, NEW.state
            USING ERRCODE = '23T01';
    END IF;
    RETURN NEW;
END
$$
"""

# The graph's schema is found when the migration runs (it is wherever 0001 created the tables)
# and written into the function, which then never depends on the caller's search_path.
_PIN_TRANSITION_GUARD = f"""
DO $migration$
BEGIN
    EXECUTE replace($body${_TRANSITION_GUARD.format(graph="@graph@")}$body$, '@graph@', (
        SELECT format('%I.%I', n.nspname, c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = 'checkout_state_transitions'::regclass));
END
$migration$
"""


def upgrade() -> None:
    for statement in (_GRAPH_GUARD, _FINISHED_GUARD, _PIN_TRANSITION_GUARD, *TRIGGERS):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER checkouts_keep_finished ON checkouts")
    op.execute("DROP TRIGGER checkout_steps_append_only ON checkout_steps")
    op.execute("DROP TRIGGER checkout_state_transitions_fixed ON checkout_state_transitions")
    op.execute("DROP FUNCTION orchestrator_guard_finished()")
    op.execute("DROP FUNCTION orchestrator_refuse_graph_change()")
    op.execute(_TRANSITION_GUARD.format(graph="checkout_state_transitions"))
