"""orchestrator: drives Violet checkouts as persisted, crash-safe state machines.

The public API is what this module exports; everything else is an implementation detail.
"""

from orchestrator.api import Orchestrator
from orchestrator.checkout import AuditEvent, Checkout
from orchestrator.config import Settings, load_settings
from orchestrator.errors import (
    CheckoutBusy,
    CheckoutConflict,
    CheckoutNotFound,
    ConfigError,
    DatabaseUnavailable,
    IllegalTransition,
    InvalidRequest,
    LeaseLost,
    OrchestratorError,
    PaymentNotConfirmed,
    SchemaNotMigrated,
    VioletError,
)
from orchestrator.request import CheckoutRequest
from orchestrator.store.database import migrate
from orchestrator.sync import SyncOrchestrator

__all__ = [
    "AuditEvent",
    "Checkout",
    "CheckoutBusy",
    "CheckoutConflict",
    "CheckoutNotFound",
    "CheckoutRequest",
    "ConfigError",
    "DatabaseUnavailable",
    "IllegalTransition",
    "InvalidRequest",
    "LeaseLost",
    "Orchestrator",
    "OrchestratorError",
    "PaymentNotConfirmed",
    "SchemaNotMigrated",
    "Settings",
    "SyncOrchestrator",
    "VioletError",
    "load_settings",
    "migrate",
]
