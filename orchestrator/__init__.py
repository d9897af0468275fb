"""orchestrator: drives Violet checkouts as persisted, crash-safe state machines."""

from orchestrator.config import Settings, load_settings
from orchestrator.errors import (
    CheckoutBusy,
    CheckoutNotFound,
    ConfigError,
    DatabaseUnavailable,
    IllegalTransition,
    LeaseLost,
    OrchestratorError,
    SchemaNotMigrated,
)

__all__ = [
    "CheckoutBusy",
    "CheckoutNotFound",
    "ConfigError",
    "DatabaseUnavailable",
    "IllegalTransition",
    "LeaseLost",
    "OrchestratorError",
    "SchemaNotMigrated",
    "Settings",
    "load_settings",
]
