"""The orchestrator's tables as SQLAlchemy Core metadata: what alembic's drift check compares.

The migrations are the authority on what the database holds (they also carry the triggers and
functions that guard it, which metadata cannot express); this module is the same schema in a form
code can import, and `alembic check` fails when the two drift apart. Every constraint gets a
stable name from the naming convention, so later migrations can refer to it.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, REAL, UUID
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.types import UserDefinedType

from orchestrator import bag_states, states
from orchestrator.store.schema_names import (  # re-exported: the schema names them too
    AUDIT_RETENTION_MAX_DAYS as AUDIT_RETENTION_MAX_DAYS,
)
from orchestrator.store.schema_names import (
    SQLSTATE_APPEND_ONLY as SQLSTATE_APPEND_ONLY,
)
from orchestrator.store.schema_names import (
    SQLSTATE_ILLEGAL_TRANSITION as SQLSTATE_ILLEGAL_TRANSITION,
)
from orchestrator.store.schema_names import SQLSTATE_TRIPWIRE as SQLSTATE_TRIPWIRE
from orchestrator.store.schema_names import VERSION_TABLE as VERSION_TABLE

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata: Final = MetaData(naming_convention=NAMING_CONVENTION)

#: Every checkout state, as stored (the CHECK constraint on `checkouts.state` holds this list;
#: `orchestrator.states` declares it and a test compares it with the migrated database).
CHECKOUT_STATES: Final[tuple[str, ...]] = states.STATES
PAYMENT_KINDS: Final[tuple[str, ...]] = ("card", "token", "intent")


_NOW = text("now()")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


checkouts: Final = Table(
    "checkouts",
    metadata,
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("app_order_id", Text, nullable=False),
    Column("violet_order_id", BigInteger, nullable=True),
    Column("state", Text, nullable=False),
    Column("version", Integer, nullable=False, server_default=text("0")),
    Column("pending_step", Text, nullable=True),
    Column("in_flight", Boolean, nullable=False, server_default=false()),
    Column("step_no", Integer, nullable=False, server_default=text("0")),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("step_started_at", DateTime(timezone=True), nullable=True),
    # The last instant the step's request may leave, by its sender's timeouts (migration 0007).
    Column("step_send_by", DateTime(timezone=True), nullable=True),
    Column("lease_owner", Text, nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Column("lease_epoch", BigInteger, nullable=False, server_default=text("0")),
    Column("recoveries", Integer, nullable=False, server_default=text("0")),
    Column("event_seq", Integer, nullable=False, server_default=text("0")),
    Column("request", JSONB, nullable=False),
    Column("payment_kind", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("sub_total", BigInteger, nullable=True),
    Column("shipping_total", BigInteger, nullable=True),
    Column("tax_total", BigInteger, nullable=True),
    Column("discount_total", BigInteger, nullable=True),
    Column("total", BigInteger, nullable=True),
    Column("bags", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("violet_status", Text, nullable=True),
    Column("waiting_reason", Text, nullable=True),
    Column("last_error", JSONB, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("app_order_id"),
    UniqueConstraint("violet_order_id"),
    CheckConstraint(_in("state", CHECKOUT_STATES), name="state"),
    CheckConstraint(_in("payment_kind", PAYMENT_KINDS), name="payment_kind"),
    CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
    CheckConstraint("jsonb_typeof(request) = 'object'", name="request_object"),
    CheckConstraint("jsonb_typeof(bags) = 'array'", name="bags_array"),
    CheckConstraint(
        "last_error IS NULL OR jsonb_typeof(last_error) = 'object'", name="last_error_object"
    ),
    # Room on each page for HOT updates of claims and lease renewals (migration 0004).
    postgresql_with={"fillfactor": 90},
)

# The recovery scan (`next_attempt_at <= now()`): only due, retrying or leased rows are in it,
# so its cost grows with the work to do, not with the history of finished checkouts. Its
# predicate names the open states too (migration 0019), as every reader asks for open rows:
# otherwise the planner ANDs it with the open rows' index and reads every open checkout.
Index(
    "ix_checkouts_due",
    checkouts.c.next_attempt_at,
    postgresql_where=text(f"next_attempt_at IS NOT NULL AND state NOT IN {states.TERMINAL_SQL}"),
)
# `stats`: the oldest unfinished checkout and the counts of unfinished states; only open rows.
Index(
    "ix_checkouts_open_created_at",
    checkouts.c.created_at,
    postgresql_where=text(f"state NOT IN {states.TERMINAL_SQL}"),
)
# `stats` and the metrics (migration 0015): counts per open state and steps in flight, from one
# index-only scan of the open rows. Its columns change only with step writes, never with a claim.
Index(
    "ix_checkouts_open_state",
    checkouts.c.state,
    postgresql_include=["in_flight"],
    postgresql_where=text(f"state NOT IN {states.TERMINAL_SQL}"),
)
# `list --state S`, newest first.
Index("ix_checkouts_state_created_at", checkouts.c.state, checkouts.c.created_at.desc())
# `list [--since T]`, newest first.
Index("ix_checkouts_created_at", checkouts.c.created_at.desc())
# `stats` / support: "which checkouts failed with error type X".
Index(
    "ix_checkouts_last_error_type",
    checkouts.c.last_error["type"].astext,
    postgresql_where=checkouts.c.last_error.isnot(None),
)

checkout_events: Final = Table(
    "checkout_events",
    metadata,
    # No foreign key (migration 0003): rows are inserted only by the statement that updates
    # their checkout, and checkouts cannot be deleted (trigger `checkouts_keep_forever`).
    Column("checkout_id", UUID(as_uuid=True), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("kind", Text, nullable=False),
    Column("from_state", Text, nullable=True),
    Column("to_state", Text, nullable=True),
    Column("step", Text, nullable=True),
    Column("attempt", Integer, nullable=True),
    Column("worker", Text, nullable=True),
    Column("http_method", Text, nullable=True),
    Column("http_path", Text, nullable=True),
    Column("http_status", Integer, nullable=True),
    Column("latency_ms", REAL, nullable=True),
    Column("request_body", JSONB, nullable=True),
    Column("response_body", JSONB, nullable=True),
    Column("error_class", Text, nullable=True),
    Column("error_type", Text, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("detail", JSONB, nullable=True),
    PrimaryKeyConstraint("checkout_id", "seq"),
)
# Time-range audit queries (`audit --since`, `stats`): events are appended in time order, so a
# BRIN index is tiny and costs almost nothing on the hottest insert path.
Index("ix_checkout_events_at", checkout_events.c.at, postgresql_using="brin")
# The prune's work list (migration 0014): only events with something left to prune, oldest first;
# a pruned event leaves it, so a prune costs what it removes, not the size of the history.
Index(
    "ix_checkout_events_prunable",
    checkout_events.c.at,
    postgresql_where=text("orchestrator_event_prunable(request_body, response_body, detail)"),
)

#: The retention window the database enforces (migration 0014): an event older than it may lose
#: its bulky parts, by the tables' owner only; one row, written by `orchestrator prune`.
audit_retention: Final = Table(
    "audit_retention",
    metadata,
    Column("id", Boolean, nullable=False, server_default=text("true")),
    Column("audit_days", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    PrimaryKeyConstraint("id"),
    CheckConstraint("id", name="one_row"),
    CheckConstraint(f"audit_days BETWEEN 1 AND {AUDIT_RETENTION_MAX_DAYS}", name="days"),
)

checkout_state_transitions: Final = Table(
    "checkout_state_transitions",
    metadata,
    Column("from_state", Text, nullable=False),
    Column("to_state", Text, nullable=False),
    Column("trigger", Text, nullable=False),
    PrimaryKeyConstraint("from_state", "to_state"),
)

# One row per Violet budget: `global` (Violet's own limit) and `merchant:<id>` (a merchant
# platform's limit, paced: migration 0016, store/budgets.py). Unlogged (migration 0017): soft
# state, relearned from 429s, so a turn taken before each call never waits for a WAL flush.
violet_throttle: Final = Table(
    "violet_throttle",
    metadata,
    Column("key", Text, nullable=False),
    Column("blocked_until", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("rate_per_s", Float, nullable=True),
    Column("tokens", Float, nullable=False, server_default=text("0")),
    Column("tokens_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("calls", BigInteger, nullable=False, server_default=text("0")),
    Column("rate_limited", BigInteger, nullable=False, server_default=text("0")),
    Column("last_rate_limited_at", DateTime(timezone=True), nullable=True),
    Column("decreased_at", DateTime(timezone=True), nullable=True),
    Column("window_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("window_calls", BigInteger, nullable=False, server_default=text("0")),
    # The last full window's calls a second while unpaced (migration 0018).
    Column("window_rate", Float, nullable=True),
    PrimaryKeyConstraint("key"),
    CheckConstraint("rate_per_s IS NULL OR rate_per_s > 0", name="rate_per_s"),
    prefixes=["UNLOGGED"],
)

# -- after submit: Violet's webhooks and each bag's life (migration 0008) -----------------------

#: How an inbox event ended; `pending` until the applier settles it.
INBOX_STATES: Final[tuple[str, ...]] = ("pending", "applied", "ignored", "failed")
INBOX_SETTLED_STATES: Final[tuple[str, ...]] = ("applied", "ignored")
#: Every bag status, as stored (`orchestrator.bag_states` declares them and their moves).
BAG_STATUSES: Final[tuple[str, ...]] = bag_states.STATUSES

webhook_inbox: Final = Table(
    "webhook_inbox",
    metadata,
    Column("event_id", Text, nullable=False),  # X-Violet-Event-Id: a redelivery is the same row
    Column("event_type", Text, nullable=False),
    Column("body", JSONB, nullable=False),  # redacted by orchestrator.sensitive; tripwire-checked
    Column("violet_order_id", BigInteger, nullable=True),
    Column("bag_id", BigInteger, nullable=True),
    Column("merchant_id", BigInteger, nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("state", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("applied_at", DateTime(timezone=True), nullable=True),
    Column("reason", Text, nullable=True),
    PrimaryKeyConstraint("event_id"),
    CheckConstraint(_in("state", INBOX_STATES), name="state"),
    CheckConstraint("length(event_id) BETWEEN 1 AND 200", name="event_id"),
    CheckConstraint("event_type ~ '^[A-Z0-9_]{1,100}$'", name="event_type"),
)
# The applier's queue: pending events in arrival order; only pending rows are in it.
Index(
    "ix_webhook_inbox_pending",
    webhook_inbox.c.received_at,
    postgresql_where=text("state = 'pending'"),
)
# The metrics' count and age of failed events (rare); only failed rows are in it (0015).
Index(
    "ix_webhook_inbox_failed",
    webhook_inbox.c.received_at,
    postgresql_where=text("state = 'failed'"),
)
# An order's events, in arrival order.
Index(
    "ix_webhook_inbox_violet_order_id",
    webhook_inbox.c.violet_order_id,
    webhook_inbox.c.received_at,
    postgresql_where=webhook_inbox.c.violet_order_id.isnot(None),
)
# The prune's work list (migration 0014): settled events whose body is still there.
Index(
    "ix_webhook_inbox_prunable",
    webhook_inbox.c.received_at,
    postgresql_where=text(f"state IN {INBOX_SETTLED_STATES!r} AND NOT body ? 'pruned_at'"),
)

checkout_bag_transitions: Final = Table(
    "checkout_bag_transitions",
    metadata,
    Column("from_status", Text, nullable=False),
    Column("to_status", Text, nullable=False),
    PrimaryKeyConstraint("from_status", "to_status"),
)

checkout_bags: Final = Table(
    "checkout_bags",
    metadata,
    Column("checkout_id", UUID(as_uuid=True), nullable=False),
    Column("bag_id", BigInteger, nullable=False),
    Column("merchant_id", BigInteger, nullable=True),
    Column("status", Text, nullable=False),
    Column("status_at", DateTime(timezone=True), nullable=False),  # when the news is from
    Column("financial_status", Text, nullable=True),
    Column("fulfillment_status", Text, nullable=True),
    Column("currency", Text, nullable=True),
    Column("refunded_amount", BigInteger, nullable=False, server_default=text("0")),
    Column("canceled_amount", BigInteger, nullable=False, server_default=text("0")),
    Column("last_event_id", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    PrimaryKeyConstraint("checkout_id", "bag_id"),
    ForeignKeyConstraint(["checkout_id"], ["checkouts.id"]),
    CheckConstraint(_in("status", BAG_STATUSES), name="status"),
    CheckConstraint("currency IS NULL OR currency ~ '^[A-Z]{3}$'", name="currency"),
    CheckConstraint("refunded_amount >= 0 AND canceled_amount >= 0", name="amounts"),
)
# An event names a bag, not its checkout.
Index("ix_checkout_bags_bag_id", checkout_bags.c.bag_id)

#: Columns a finished checkout may still change (migration 0009): the lease, the audit sequence
#: and Violet's order status, for the order's life after submit; a trigger refuses every other.
COLUMNS_CHANGING_AFTER_FINISH: Final[tuple[str, ...]] = (
    "lease_owner",
    "lease_expires_at",
    "lease_epoch",
    "version",
    "event_seq",
    "violet_status",
    "updated_at",
)
#: Columns a retry's reopen of a failed checkout changes besides those (migration 0011): only
#: back to where its audit trail says it failed, with that step in flight; a trigger refuses any
#: other change of a failed row.
COLUMNS_CHANGING_ON_REOPEN: Final[tuple[str, ...]] = (
    "state",
    "pending_step",
    "in_flight",
    "attempt",
    "recoveries",
    "next_attempt_at",
    "last_error",
    "finished_at",
)

#: A requested cancel or refund: written before it is sent, sent at most once (migration 0009).
BAG_ACTION_KINDS: Final[tuple[str, ...]] = ("cancel", "refund")
BAG_ACTION_STATES: Final[tuple[str, ...]] = ("requested", "sent", "succeeded", "failed")
OPEN_BAG_ACTION_STATES: Final[tuple[str, ...]] = ("requested", "sent")

bag_actions: Final = Table(
    "bag_actions",
    metadata,
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("checkout_id", UUID(as_uuid=True), nullable=False),
    Column("bag_id", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("state", Text, nullable=False, server_default=text("'requested'")),
    Column("amount", BigInteger, nullable=True),
    Column("skus", JSONB, nullable=True),
    Column("reason", Text, nullable=True),
    Column("actor", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("send_by", DateTime(timezone=True), nullable=True),
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Column("answer", JSONB, nullable=True),
    Column("error", JSONB, nullable=True),
    PrimaryKeyConstraint("id"),
    ForeignKeyConstraint(["checkout_id"], ["checkouts.id"]),
    CheckConstraint(_in("kind", BAG_ACTION_KINDS), name="kind"),
    CheckConstraint(_in("state", BAG_ACTION_STATES), name="state"),
    CheckConstraint("amount IS NULL OR amount > 0", name="amount"),
    CheckConstraint("length(actor) BETWEEN 1 AND 200", name="actor"),
)
# At most one open action per bag: a second cancel or refund waits for the first to settle.
Index(
    "ux_bag_actions_one_open_per_bag",
    bag_actions.c.checkout_id,
    bag_actions.c.bag_id,
    unique=True,
    postgresql_where=text(_in("state", OPEN_BAG_ACTION_STATES)),
)
Index("ix_bag_actions_checkout_id", bag_actions.c.checkout_id, bag_actions.c.requested_at)


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id: `checkout_changes.txid`, which orders the feed."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


# Reflection (the drift check) then knows the type instead of warning about it.
ischema_names["xid8"] = Xid8


#: The feed a host follows (migration 0009): `id` is a change's stable id; a reader's cursor is
#: `(txid, id)`, read only below the oldest running transaction, so it never passes a row that
#: commits later (store/changes.py); NOTIFY on `CHANGES_CHANNEL`.
CHANGES_CHANNEL: Final = "orchestrator_changes"

checkout_changes: Final = Table(
    "checkout_changes",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    Column("txid", Xid8(), nullable=False, server_default=text("pg_current_xact_id()")),
    Column("at", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("checkout_id", UUID(as_uuid=True), nullable=False),
    Column("app_order_id", Text, nullable=True),
    Column("kind", Text, nullable=False),
    Column("detail", JSONB, nullable=True),
    PrimaryKeyConstraint("id"),
    CheckConstraint("kind ~ '^[a-z_]{1,50}$'", name="kind"),
)
Index("ix_checkout_changes_checkout_id", checkout_changes.c.checkout_id, checkout_changes.c.id)
Index("ix_checkout_changes_txid", checkout_changes.c.txid, checkout_changes.c.id)

#: The tables this project owns; everything else in the database belongs to the host.
TABLE_NAMES: Final = frozenset(metadata.tables)
