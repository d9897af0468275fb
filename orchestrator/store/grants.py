"""The least-privilege role the application and the recovery job run as, as a SQL script.

`orchestrator db upgrade` runs as the owner of the tables. Everything else (the library, the
CLI's checkout commands, `recover`, `verify`) runs as a role that holds only what the code uses:
it can append history and move checkouts forward, but not delete or truncate anything, and,
not being the owner, it cannot disable or drop the triggers that guard the tables (the state
graph, the append-only trail, frozen finished checkouts, the tripwire). The script is built
from the table metadata, so a new table without a decision here is an error, not a silent gap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from orchestrator.store.schema import (
    TABLE_NAMES,
    VERSION_TABLE,
    bag_actions,
    checkout_bags,
    checkouts,
    webhook_inbox,
)

#: What the application role may do per table; nothing else (no DELETE, TRUNCATE, TRIGGER,
#: REFERENCES anywhere).
APP_PRIVILEGES: Final[Mapping[str, tuple[str, ...]]] = {
    # And UPDATE of every column but CHECKOUT_COLUMNS_FIXED_AT_INSERT.
    "checkouts": ("SELECT", "INSERT"),
    "checkout_events": ("SELECT", "INSERT"),
    # Read by the transition guard, which runs as the role that updates `checkouts`.
    "checkout_state_transitions": ("SELECT",),
    # INSERT ... ON CONFLICT DO UPDATE reads the row it updates.
    "violet_throttle": ("SELECT", "INSERT", "UPDATE"),
    # `check_schema` at start-up: is the database at the code's revision?
    VERSION_TABLE: ("SELECT",),
    # The receiver inserts (ON CONFLICT DO NOTHING); the applier claims and settles events.
    # And UPDATE of the columns that record how an event ended (INBOX_COLUMNS_FIXED_AT_INSERT).
    "webhook_inbox": ("SELECT", "INSERT"),
    # And UPDATE of every column but BAG_COLUMNS_FIXED_AT_INSERT.
    "checkout_bags": ("SELECT", "INSERT"),
    # Read by the bag transition guard, which runs as the role that updates `checkout_bags`.
    "checkout_bag_transitions": ("SELECT",),
    # A cancel or refund is written as an intent, then settled: UPDATE of every column but
    # ACTION_COLUMNS_FIXED_AT_INSERT.
    "bag_actions": ("SELECT", "INSERT"),
    # The host's feed: appended with each change, read with a cursor, never rewritten.
    "checkout_changes": ("SELECT", "INSERT"),
    # The retention window the prune guards read: the owner's alone, so the application role
    # can neither read nor move it (docs/operations.md, "Retention").
    "audit_retention": (),
}

#: Columns of `checkouts` written once by the INSERT and never updated by the code: who the
#: checkout is and what the caller asked for. The role gets UPDATE on every other column.
CHECKOUT_COLUMNS_FIXED_AT_INSERT: Final = (
    "id",
    "app_order_id",
    "request",
    "payment_kind",
    "currency",
    "created_at",
)

#: Columns of `webhook_inbox` written once, by the receiver: what Violet sent and when it came.
INBOX_COLUMNS_FIXED_AT_INSERT: Final = (
    "event_id",
    "event_type",
    "body",
    "violet_order_id",
    "bag_id",
    "merchant_id",
    "received_at",
)
#: Columns of `checkout_bags` that say which bag a row is.
BAG_COLUMNS_FIXED_AT_INSERT: Final = ("checkout_id", "bag_id", "created_at")

#: Columns of `bag_actions` that say what was asked, by whom and when.
ACTION_COLUMNS_FIXED_AT_INSERT: Final = (
    "id",
    "checkout_id",
    "bag_id",
    "kind",
    "amount",
    "skus",
    "reason",
    "actor",
    "requested_at",
)

#: Tables whose UPDATE is granted by column: every column but the ones fixed at insert.
COLUMNS_FIXED_AT_INSERT: Final[Mapping[str, tuple[str, ...]]] = {
    checkouts.name: CHECKOUT_COLUMNS_FIXED_AT_INSERT,
    webhook_inbox.name: INBOX_COLUMNS_FIXED_AT_INSERT,
    checkout_bags.name: BAG_COLUMNS_FIXED_AT_INSERT,
    bag_actions.name: ACTION_COLUMNS_FIXED_AT_INSERT,
}
_TABLES = {table.name: table for table in (checkouts, webhook_inbox, checkout_bags, bag_actions)}

_MAX_NAME_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated


def quote_ident(name: str) -> str:
    """`name` as a PostgreSQL identifier, always quoted: printable text up to 63 bytes."""
    if not name:
        raise ValueError("must not be empty")
    if not name.isprintable():
        raise ValueError("must not contain control characters")
    if len(name.encode()) > _MAX_NAME_BYTES:
        raise ValueError(f"must be at most {_MAX_NAME_BYTES} bytes (PostgreSQL would cut it)")
    return '"' + name.replace('"', '""') + '"'


def _listing(names: list[str], width: int = 96) -> str:
    """Comma-separated, indented, wrapped between names only (a quoted name may hold spaces)."""
    rows: list[list[str]] = [[]]
    for name in names:
        if rows[-1] and len(", ".join([*rows[-1], name])) + 5 > width:
            rows.append([])
        rows[-1].append(name)
    return ",\n".join("    " + ", ".join(row) for row in rows)


def check_role_name(name: str) -> str:
    """The role name, quoted; refuses what PostgreSQL would refuse or reinterpret."""
    quoted = quote_ident(name)
    if name.lower().startswith("pg_"):
        raise ValueError("names starting with pg_ are reserved by PostgreSQL")
    if name.lower() in ("public", "none"):
        raise ValueError(f"{name!r} is reserved by PostgreSQL")
    return quoted


def grants_script(role: str, *, schema: str = "public", create_role: bool = True) -> str:
    """CREATE ROLE (unless `create_role` is false) and GRANTs for the orchestrator's tables.

    Raises ValueError for a role or schema name PostgreSQL cannot take as given.
    """
    who = check_role_name(role)
    where = quote_ident(schema)
    missing = TABLE_NAMES - APP_PRIVILEGES.keys()
    if missing:
        raise RuntimeError(f"no privileges decided for table(s) {', '.join(sorted(missing))}")
    tables = [f"{where}.{quote_ident(table)}" for table in APP_PRIVILEGES]
    lines = [
        "-- The orchestrator's application role. Run as the owner of the tables (the role that",
        '-- runs `orchestrator db upgrade`): ... | psql -v ON_ERROR_STOP=1 "$OWNER_URL"',
        "-- Only what the application and the recovery job use: no DELETE, no TRUNCATE. Never",
        "-- make this role the tables' owner or a member of the owner's role.",
        "BEGIN;",
    ]
    if create_role:
        lines += [
            "-- Needs CREATEROLE. Give it a password afterwards (psql: \\password ROLE).",
            f"CREATE ROLE {who} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
            "NOBYPASSRLS;",
            f"ALTER ROLE {who} SET search_path = {where};",
        ]
    else:
        lines.append("-- The role exists already: its search_path must find the tables.")
    lines += [
        f"GRANT USAGE ON SCHEMA {where} TO {who};",
        f"REVOKE ALL ON TABLE\n{_listing(tables)}\nFROM {who};",
    ]
    for table, privileges in APP_PRIVILEGES.items():
        target = f"{where}.{quote_ident(table)}"
        if privileges:
            lines.append(f"GRANT {', '.join(privileges)} ON TABLE {target} TO {who};")
        fixed = COLUMNS_FIXED_AT_INSERT.get(table)
        if fixed is not None:
            columns = [
                quote_ident(column.name)
                for column in _TABLES[table].columns
                if column.name not in fixed
            ]
            lines.append(f"GRANT UPDATE (\n{_listing(columns)}\n) ON TABLE {target} TO {who};")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"
