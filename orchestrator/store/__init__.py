"""The PostgreSQL layer: schema, migrations and database bootstrap (knows nothing of HTTP)."""

from orchestrator.store.database import (
    EmbeddedPostgres,
    check_schema,
    create_engine,
    current_revision,
    downgrade,
    head_revision,
    migrate,
    resolve_database_url,
    schema_drift,
)
from orchestrator.store.schema import (
    CHECKOUT_STATES,
    SQLSTATE_APPEND_ONLY,
    SQLSTATE_ILLEGAL_TRANSITION,
    SQLSTATE_TRIPWIRE,
    VERSION_TABLE,
    metadata,
)

__all__ = [
    "CHECKOUT_STATES",
    "SQLSTATE_APPEND_ONLY",
    "SQLSTATE_ILLEGAL_TRANSITION",
    "SQLSTATE_TRIPWIRE",
    "VERSION_TABLE",
    "EmbeddedPostgres",
    "check_schema",
    "create_engine",
    "current_revision",
    "downgrade",
    "head_revision",
    "metadata",
    "migrate",
    "resolve_database_url",
    "schema_drift",
]
