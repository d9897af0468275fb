"""Retry: a failed checkout may be reopened where it failed, and in no other way.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08

An operator may retry a checkout whose failure was operational (retries exhausted, poison, our
configuration, Violet unreachable). The retry reopens it in the state it failed from, with the
step that failed in flight, so the step's reconcile rule reads Violet before anything is sent
again (design §3).

- The graph gains `failed -> S` (trigger `retry`) for each state S a step runs in, and
  `awaiting_payment -> awaiting_payment` (`need_payment`): a payment step resumed there without
  the card (a retry, or a crash after the card was given again) waits for it again. The graph
  table's guard trigger is dropped and created again around the new rows, in this migration's
  transaction (revision 0005).
- A finished checkout stays frozen (revisions 0005 and 0009) but for this one move: a failed row
  may leave `failed` only for the state named by its last transition into `failed` in its audit
  trail, with that transition's step pending, in flight, no attempt made yet, no crash counted,
  not finished, a new lease epoch and events appended. Besides the columns a finished row may
  always change, such a reopen changes only `REOPEN_COLUMNS`; the request, the Violet ids, the
  totals, the bags and the step's start (the settle window reads it) stay as they are. Any other
  UPDATE of a failed row, a move to another state included, is refused (23T02). Moves the graph
  does not know (`failed -> submitted`) are still refused first by the transition guard (23T01).
- The audit trail is read through its schema-qualified name, pinned when this migration runs, as
  revision 0005 pins the graph's.

A migration is a frozen copy: nothing is imported from the application.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STEP_STATES = (
    "new",
    "created",
    "customer_applied",
    "shipping_applied",
    "paid",
    "awaiting_payment",
    "priced",
)
NEW_MOVES: tuple[tuple[str, str, str], ...] = (
    *(("failed", state, "retry") for state in STEP_STATES),
    ("awaiting_payment", "awaiting_payment", "need_payment"),
)

# Revision 0009's list: what any finished row may change (its lease, its news after submit).
ALLOWED_AFTER_FINISH: tuple[str, ...] = (
    "lease_owner",
    "lease_expires_at",
    "lease_epoch",
    "version",
    "event_seq",
    "violet_status",
    "updated_at",
)
# What a retry's reopen changes besides them.
REOPEN_COLUMNS: tuple[str, ...] = (
    "state",
    "pending_step",
    "in_flight",
    "attempt",
    "recoveries",
    "next_attempt_at",
    "last_error",
    "finished_at",
)


def _array(values: Sequence[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{value}'" for value in values) + "]::text[]"


_GUARD_BODY = f"""
CREATE OR REPLACE FUNCTION orchestrator_guard_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb := to_jsonb(OLD);
    allowed text[] := {_array(ALLOWED_AFTER_FINISH)};
    failed_from text;
    failed_step text;
    changed text;
BEGIN
    IF OLD.state = 'failed' AND NEW.state IS DISTINCT FROM OLD.state THEN
        -- A retry (the transition guard, which runs first, has checked the graph allows it).
        SELECT e.from_state, e.step INTO failed_from, failed_step
        FROM @events@ e
        WHERE e.checkout_id = OLD.id AND e.kind = 'transition' AND e.to_state = 'failed'
        ORDER BY e.seq DESC LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'checkout % has no failure in its audit trail: it is not reopened',
                OLD.id USING ERRCODE = '23T02';
        END IF;
        IF NEW.state IS DISTINCT FROM failed_from
           OR NEW.pending_step IS DISTINCT FROM failed_step THEN
            RAISE EXCEPTION USING ERRCODE = '23T02', MESSAGE = format(
                'checkout %s failed in %s at step %s: a retry reopens it there, '
                'not in %s at %s', OLD.id, failed_from, failed_step, NEW.state, NEW.pending_step);
        END IF;
        IF NOT (NEW.in_flight AND NEW.attempt = 0 AND NEW.recoveries = 0
                AND NEW.finished_at IS NULL AND NEW.lease_epoch > OLD.lease_epoch
                AND NEW.event_seq > OLD.event_seq) THEN
            RAISE EXCEPTION USING ERRCODE = '23T02', MESSAGE = format(
                'checkout %s: a retry reopens its failed step in flight, unfinished, with no '
                'attempt or crash counted, a new lease epoch and its audit events', OLD.id);
        END IF;
        allowed := allowed || {_array(REOPEN_COLUMNS)};
    END IF;
    SELECT string_agg(n.key, ', ' ORDER BY n.key) INTO changed
    FROM jsonb_each(to_jsonb(NEW)) AS n
    WHERE n.value IS DISTINCT FROM old_row -> n.key
      AND n.key <> ALL (allowed);
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'checkout % is finished (%): its row is kept as it is; UPDATE of % refused',
            OLD.id, OLD.state, changed USING ERRCODE = '23T02';
    END IF;
    RETURN NEW;
END
$$
"""

# The audit trail's schema is found when the migration runs and written into the function.
_PIN_GUARD = f"""
DO $migration$
BEGIN
    EXECUTE replace($body${_GUARD_BODY}$body$, '@events@', (
        SELECT format('%I.%I', n.nspname, c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = 'checkout_events'::regclass));
END
$migration$
"""

# Revision 0009's function, as it was.
_PREVIOUS_GUARD = f"""
CREATE OR REPLACE FUNCTION orchestrator_guard_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb := to_jsonb(OLD);
    changed text;
BEGIN
    SELECT string_agg(n.key, ', ' ORDER BY n.key) INTO changed
    FROM jsonb_each(to_jsonb(NEW)) AS n
    WHERE n.value IS DISTINCT FROM old_row -> n.key
      AND n.key <> ALL ({_array(ALLOWED_AFTER_FINISH)});
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'checkout % is finished (%): its row is kept as it is; UPDATE of % refused',
            OLD.id, OLD.state, changed USING ERRCODE = '23T02';
    END IF;
    RETURN NEW;
END
$$
"""

_GRAPH_FIXED = """
CREATE TRIGGER checkout_state_transitions_fixed
BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON checkout_state_transitions
FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_refuse_graph_change()
"""
_GRAPH_UNFIXED = "DROP TRIGGER checkout_state_transitions_fixed ON checkout_state_transitions"

_MOVES_SQL = ", ".join(f"('{f}', '{t}', '{trigger}')" for f, t, trigger in NEW_MOVES)


def upgrade() -> None:
    op.execute(_GRAPH_UNFIXED)
    op.execute(
        "INSERT INTO checkout_state_transitions (from_state, to_state, trigger) "
        f"VALUES {_MOVES_SQL}"
    )
    op.execute(_GRAPH_FIXED)
    op.execute(_PIN_GUARD)


def downgrade() -> None:
    # A checkout a retry reopened stays as it is: it is an open checkout like any other.
    op.execute(_PREVIOUS_GUARD)
    op.execute(_GRAPH_UNFIXED)
    op.execute(
        "DELETE FROM checkout_state_transitions "
        f"WHERE (from_state, to_state, trigger) IN ({_MOVES_SQL})"
    )
    op.execute(_GRAPH_FIXED)
