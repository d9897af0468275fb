"""The PostgreSQL layer: schema, migrations and database bootstrap (knows nothing of HTTP).

Names are imported on first use (PEP 562): `orchestrator.store.records` is imported by commands
that never open a connection, and should not pay for SQLAlchemy and alembic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from orchestrator.store.schema import CHECKOUT_STATES, metadata
    from orchestrator.store.schema_names import (
        SQLSTATE_APPEND_ONLY,
        SQLSTATE_ILLEGAL_TRANSITION,
        SQLSTATE_TRIPWIRE,
        VERSION_TABLE,
    )

_HOMES = {
    "CHECKOUT_STATES": "orchestrator.store.schema",
    "EmbeddedPostgres": "orchestrator.store.database",
    "SQLSTATE_APPEND_ONLY": "orchestrator.store.schema_names",
    "SQLSTATE_ILLEGAL_TRANSITION": "orchestrator.store.schema_names",
    "SQLSTATE_TRIPWIRE": "orchestrator.store.schema_names",
    "VERSION_TABLE": "orchestrator.store.schema_names",
    "check_schema": "orchestrator.store.database",
    "create_engine": "orchestrator.store.database",
    "current_revision": "orchestrator.store.database",
    "downgrade": "orchestrator.store.database",
    "head_revision": "orchestrator.store.database",
    "metadata": "orchestrator.store.schema",
    "migrate": "orchestrator.store.database",
    "resolve_database_url": "orchestrator.store.database",
    "schema_drift": "orchestrator.store.database",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
