"""Retention of the audit trail: old events lose their bulky parts, their skeleton stays forever.

Revision ID: 0014
Revises: 0010
Create Date: 2026-12-08

`checkout_events` and `webhook_inbox` grow with every checkout. Most of their bytes are Violet's
request and response summaries (`request_body`, `response_body`) and webhook bodies, which
support reads in the first weeks and never after. This revision lets the tables' owner strip
those parts from rows older than a retention window (`orchestrator prune`), and lets nothing else
change, so the trail stays append-only in every other respect:

- `audit_retention` holds the window, in days (one row; the owner's: the application role has no
  privilege on it). `orchestrator prune` writes the window it runs with before it prunes.
- An event's pruned form is computed by the database, once (`orchestrator_pruned_detail`):
  `request_body` and `response_body` become NULL; `detail` keeps every key whose value, written
  as JSON, is at most 200 characters, and gains `pruned_at` (UTC, seconds) and `pruned` (what was
  removed: `request_body`, `response_body`, `detail.<key>`). A detail that is not an object is
  read as `{"value": detail}`. Every other column is the skeleton and never changes.
- `checkout_events_append_only` now refuses DELETE and TRUNCATE only (per statement, as before);
  UPDATE goes through `checkout_events_prune_only`, per row, which refuses it (23T02) unless the
  updating role has the table owner's privileges, the event is older than the window of
  `audit_retention`, and the new row is exactly the pruned form of the old one (an update that
  changes nothing also passes). The window is read by its schema-qualified name, written in when
  this migration runs, so a temporary table of the same name cannot stand in for it (see 0005).
- The secret tripwire on `checkout_events` now runs on INSERT only: the one UPDATE that passes the
  guard (which fires first, by name) only removes values and adds the marker, and re-checking
  the kept ones against today's rules could refuse an event written under older rules (its
  error message, say) and stop every later prune at that row.
- A settled webhook event (`applied`, `ignored`) stays frozen except for the same prune: its body
  becomes `{"pruned_at": ...}` when it is older than the window, by the owner; its event id (the
  dedupe key: a redelivery is still recognised), type, ids, times and outcome stay.
- `checkout_changes` is untouched: the feed promises every change from cursor `0:0` on
  (docs/changes.md), and its rows are small.

The work left is found through partial indexes that hold only rows with something to prune
(`ix_checkout_events_prunable`, `ix_webhook_inbox_prunable`): a pruned row leaves the index, so
each prune costs what it removes, not the size of the history. Building the events index reads
the table once, under a lock that holds inserts back while it runs (docs/operations.md,
"Retention", gives the measured time per million events).

A migration is a frozen copy: nothing is imported from the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_DAYS = 90
MAX_DAYS = 36500
# A detail value longer than this, written as JSON, is bulky.
DETAIL_VALUE_CHARS = 200
SETTLED_INBOX_STATES = ("applied", "ignored")
_SETTLED_SQL = ", ".join(f"'{state}'" for state in SETTLED_INBOX_STATES)
# The columns a prune may change; every other column of an event is its skeleton.
BULKY_COLUMNS = ("request_body", "response_body", "detail")
_BULKY_SQL = ", ".join(f"'{column}'" for column in BULKY_COLUMNS)

# -- what a pruned event is ----------------------------------------------------------------------

_AS_OBJECT = (
    "CASE WHEN {d} IS NULL THEN '{{}}'::jsonb WHEN jsonb_typeof({d}) = 'object' THEN {d} "
    "ELSE jsonb_build_object('value', {d}) END"
)

FUNCTIONS = (
    # The keys of a detail whose values are bulky, sorted.
    f"""
    CREATE FUNCTION orchestrator_bulky_detail_keys(detail jsonb) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT coalesce(array_agg(e.key ORDER BY e.key), '{{}}')
        FROM jsonb_each({_AS_OBJECT.format(d="detail")}) AS e
        WHERE length(e.value::text) > {DETAIL_VALUE_CHARS}
    $$
    """,
    # Whether an event has something to prune: the predicate of the partial index. Inlined by
    # the planner; the key walk runs only for a detail longer than one bulky value (the NOT
    # NULL test first: `NULL AND x` evaluates x, and most events have no detail).
    f"""
    CREATE FUNCTION orchestrator_event_prunable(
        request_body jsonb, response_body jsonb, detail jsonb
    ) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT NOT coalesce(jsonb_typeof(detail) = 'object' AND detail ? 'pruned_at', false)
           AND (request_body IS NOT NULL OR response_body IS NOT NULL
                OR (detail IS NOT NULL AND length(detail::text) > {DETAIL_VALUE_CHARS}
                    AND cardinality(orchestrator_bulky_detail_keys(detail)) > 0))
    $$
    """,
    """
    CREATE FUNCTION orchestrator_pruned_stamp(at timestamptz) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE AS $$
        SELECT to_jsonb(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
    $$
    """,
    # The detail of the pruned form of an event; the detail itself when there is nothing to
    # prune (already pruned, or nothing bulky).
    f"""
    CREATE FUNCTION orchestrator_pruned_detail(
        request_body jsonb, response_body jsonb, detail jsonb, pruned_at timestamptz
    ) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE AS $$
        SELECT CASE
            WHEN NOT orchestrator_event_prunable(request_body, response_body, detail) THEN detail
            ELSE ({_AS_OBJECT.format(d="detail")} - bulky.keys) || jsonb_build_object(
                'pruned_at', orchestrator_pruned_stamp(pruned_at),
                'pruned', to_jsonb(
                    array_remove(ARRAY[
                        CASE WHEN request_body IS NOT NULL THEN 'request_body' END,
                        CASE WHEN response_body IS NOT NULL THEN 'response_body' END
                    ], NULL)
                    || ARRAY(SELECT 'detail.' || k FROM unnest(bulky.keys) AS k)))
        END
        FROM (SELECT orchestrator_bulky_detail_keys(detail) AS keys) AS bulky
    $$
    """,
)

# -- who may prune, and when ---------------------------------------------------------------------

# `@window@` becomes the schema-qualified window table when the migration runs.
_EVENT_GUARD = f"""
CREATE FUNCTION orchestrator_guard_event_prune() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    window_days integer;
    changed text;
BEGIN
    IF NOT pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID),
                       'USAGE') THEN
        RAISE EXCEPTION 'checkout_events is append-only: UPDATE refused (only the tables'' '
            'owner may prune events older than the retention window; % is not the owner)',
            current_user USING ERRCODE = '23T02';
    END IF;
    SELECT r.audit_days INTO window_days FROM @window@ r;
    IF window_days IS NULL OR OLD.at >= now() - make_interval(days => window_days) THEN
        RAISE EXCEPTION 'checkout_events is append-only: UPDATE refused (event % of checkout % '
            'is inside the retention window of % days)', OLD.seq, OLD.checkout_id,
            coalesce(window_days::text, '(unset)') USING ERRCODE = '23T02';
    END IF;
    SELECT string_agg(n.key, ', ' ORDER BY n.key) INTO changed
    FROM jsonb_each(to_jsonb(NEW) - ARRAY[{_BULKY_SQL}]) AS n
    WHERE n.value IS DISTINCT FROM (to_jsonb(OLD) -> n.key);
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'checkout_events is append-only: UPDATE of % refused (a pruned event '
            'keeps its skeleton)', changed USING ERRCODE = '23T02';
    END IF;
    IF (NEW.request_body, NEW.response_body, NEW.detail)
           IS NOT DISTINCT FROM (OLD.request_body, OLD.response_body, OLD.detail)
       OR (NEW.request_body IS NULL AND NEW.response_body IS NULL
           AND NEW.detail IS NOT DISTINCT FROM orchestrator_pruned_detail(
               OLD.request_body, OLD.response_body, OLD.detail, now())) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'checkout_events is append-only: UPDATE refused (event % of checkout %: only '
        'the prune''s change is allowed: bodies to NULL, detail as orchestrator_pruned_detail '
        'makes it)', OLD.seq, OLD.checkout_id USING ERRCODE = '23T02';
END
$$
"""

_INBOX_GUARD = """
CREATE OR REPLACE FUNCTION orchestrator_guard_settled_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    window_days integer;
BEGIN
    IF NEW.body IS DISTINCT FROM OLD.body
       AND NOT OLD.body ? 'pruned_at'
       AND NEW.body = jsonb_build_object('pruned_at', orchestrator_pruned_stamp(now()))
       AND (to_jsonb(NEW) - 'body') = (to_jsonb(OLD) - 'body')
       AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID),
                       'USAGE')
    THEN
        SELECT r.audit_days INTO window_days FROM @window@ r;
        IF window_days IS NOT NULL
           AND OLD.received_at < now() - make_interval(days => window_days) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'webhook event % is settled (%): UPDATE refused (only the owner''s prune of '
        'a body older than the retention window may change it)', OLD.event_id, OLD.state
        USING ERRCODE = '23T02';
END
$$
"""

_OLD_INBOX_GUARD = """
CREATE OR REPLACE FUNCTION orchestrator_guard_settled_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'webhook event % is settled (%): UPDATE refused', OLD.event_id, OLD.state
        USING ERRCODE = '23T02';
END
$$
"""


def _pinned(function: str) -> str:
    """`function` created with the window table's schema-qualified name written in."""
    return f"""
DO $migration$
BEGIN
    EXECUTE replace($body${function}$body$, '@window@', (
        SELECT format('%I.%I', n.nspname, c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = 'audit_retention'::regclass));
END
$migration$
"""


TRIGGERS = (
    "DROP TRIGGER checkout_events_tripwire ON checkout_events",
    """
    CREATE TRIGGER checkout_events_tripwire BEFORE INSERT ON checkout_events
    FOR EACH ROW EXECUTE FUNCTION orchestrator_tripwire_checkout_events()
    """,
    "DROP TRIGGER checkout_events_append_only ON checkout_events",
    """
    CREATE TRIGGER checkout_events_append_only BEFORE DELETE OR TRUNCATE
    ON checkout_events FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_refuse_change()
    """,
    """
    CREATE TRIGGER checkout_events_prune_only BEFORE UPDATE ON checkout_events
    FOR EACH ROW EXECUTE FUNCTION orchestrator_guard_event_prune()
    """,
)


def upgrade() -> None:
    op.create_table(
        "audit_retention",
        sa.Column("id", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("audit_days", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_retention")),
        sa.CheckConstraint("id", name=op.f("ck_audit_retention_one_row")),
        sa.CheckConstraint(
            f"audit_days BETWEEN 1 AND {MAX_DAYS}", name=op.f("ck_audit_retention_days")
        ),
    )
    op.execute(f"INSERT INTO audit_retention (audit_days) VALUES ({DEFAULT_DAYS})")
    for statement in FUNCTIONS:
        op.execute(statement)
    op.execute(_pinned(_EVENT_GUARD))
    op.execute(_pinned(_INBOX_GUARD))
    for statement in TRIGGERS:
        op.execute(statement)
    op.create_index(
        "ix_checkout_events_prunable",
        "checkout_events",
        ["at"],
        postgresql_where=sa.text(
            "orchestrator_event_prunable(request_body, response_body, detail)"
        ),
    )
    op.create_index(
        "ix_webhook_inbox_prunable",
        "webhook_inbox",
        ["received_at"],
        postgresql_where=sa.text(f"state IN ({_SETTLED_SQL}) AND NOT body ? 'pruned_at'"),
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_inbox_prunable", table_name="webhook_inbox")
    op.drop_index("ix_checkout_events_prunable", table_name="checkout_events")
    op.execute("DROP TRIGGER checkout_events_prune_only ON checkout_events")
    op.execute("DROP TRIGGER checkout_events_tripwire ON checkout_events")
    op.execute(
        """
        CREATE TRIGGER checkout_events_tripwire BEFORE INSERT OR UPDATE ON checkout_events
        FOR EACH ROW EXECUTE FUNCTION orchestrator_tripwire_checkout_events()
        """
    )
    op.execute("DROP TRIGGER checkout_events_append_only ON checkout_events")
    op.execute(
        """
        CREATE TRIGGER checkout_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
        ON checkout_events FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_refuse_change()
        """
    )
    op.execute(_OLD_INBOX_GUARD)
    op.execute("DROP FUNCTION orchestrator_guard_event_prune()")
    for function in (
        "orchestrator_pruned_detail(jsonb, jsonb, jsonb, timestamptz)",
        "orchestrator_pruned_stamp(timestamptz)",
        "orchestrator_event_prunable(jsonb, jsonb, jsonb)",
        "orchestrator_bulky_detail_keys(jsonb)",
    ):
        op.execute(f"DROP FUNCTION {function}")
    op.drop_table("audit_retention")
