"""The public API is exactly what `orchestrator.__all__` exports (a change here is deliberate)."""

import orchestrator

EXPECTED = {
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
}


def test_exported_names() -> None:
    assert set(orchestrator.__all__) == EXPECTED
    for name in orchestrator.__all__:
        assert getattr(orchestrator, name) is not None


def test_every_library_error_is_an_orchestrator_error() -> None:
    for name in orchestrator.__all__:
        value = getattr(orchestrator, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, orchestrator.OrchestratorError), name
