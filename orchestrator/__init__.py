"""orchestrator: drives Violet checkouts as persisted, crash-safe state machines.

The public API is what this module exports; everything else is an implementation detail.
Names are imported on first use (PEP 562), so `import orchestrator.cli.app` (every CLI start) does
not pay for the database drivers, HTTP client and pydantic models the library rests on.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from orchestrator.api import Orchestrator
    from orchestrator.checkout import AuditEvent, Checkout, RetryCandidate, RetryReport
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
        OwnerRoleRequired,
        PaymentNotConfirmed,
        RetryRefused,
        SchemaNotMigrated,
        VioletError,
    )
    from orchestrator.request import CheckoutRequest
    from orchestrator.retention import PruneReport, prune
    from orchestrator.store.actions import BagAction
    from orchestrator.store.changes import Change
    from orchestrator.store.database import migrate
    from orchestrator.sync import SyncOrchestrator

_HOMES = {
    "AuditEvent": "orchestrator.checkout",
    "BagAction": "orchestrator.store.actions",
    "Change": "orchestrator.store.changes",
    "Checkout": "orchestrator.checkout",
    "CheckoutBusy": "orchestrator.errors",
    "CheckoutConflict": "orchestrator.errors",
    "CheckoutNotFound": "orchestrator.errors",
    "CheckoutRequest": "orchestrator.request",
    "ConfigError": "orchestrator.errors",
    "DatabaseUnavailable": "orchestrator.errors",
    "IllegalTransition": "orchestrator.errors",
    "InvalidRequest": "orchestrator.errors",
    "LeaseLost": "orchestrator.errors",
    "Orchestrator": "orchestrator.api",
    "OrchestratorError": "orchestrator.errors",
    "OwnerRoleRequired": "orchestrator.errors",
    "PruneReport": "orchestrator.retention",
    "PaymentNotConfirmed": "orchestrator.errors",
    "RetryCandidate": "orchestrator.checkout",
    "RetryRefused": "orchestrator.errors",
    "RetryReport": "orchestrator.checkout",
    "SchemaNotMigrated": "orchestrator.errors",
    "Settings": "orchestrator.config",
    "SyncOrchestrator": "orchestrator.sync",
    "VioletError": "orchestrator.errors",
    "load_settings": "orchestrator.config",
    "migrate": "orchestrator.store.database",
    "prune": "orchestrator.retention",
}

__all__ = [
    "AuditEvent",
    "BagAction",
    "Change",
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
    "OwnerRoleRequired",
    "PaymentNotConfirmed",
    "PruneReport",
    "RetryCandidate",
    "RetryRefused",
    "RetryReport",
    "SchemaNotMigrated",
    "Settings",
    "SyncOrchestrator",
    "VioletError",
    "load_settings",
    "migrate",
    "prune",
]


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
