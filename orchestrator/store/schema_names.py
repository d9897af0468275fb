"""Names the database's schema defines that code outside SQLAlchemy needs: the read-only CLI
queries start without SQLAlchemy, so they cannot take these from `store.schema`'s metadata
(which re-exports them)."""

from __future__ import annotations

from typing import Final

#: SQLSTATEs raised by the database's own guards (class 23, so psycopg raises IntegrityError).
SQLSTATE_ILLEGAL_TRANSITION: Final = "23T01"
SQLSTATE_APPEND_ONLY: Final = "23T02"
SQLSTATE_TRIPWIRE: Final = "23T03"

#: The alembic version table: our own, so the schema can live in a host application's database.
VERSION_TABLE: Final = "orchestrator_alembic_version"

#: The longest retention window `audit_retention` accepts, in days (a CHECK of migration 0014).
AUDIT_RETENTION_MAX_DAYS: Final = 36500
