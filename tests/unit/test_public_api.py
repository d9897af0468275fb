"""The public API is exactly what `orchestrator.__all__` exports (a change here is deliberate).

Both ways: every exported name is importable from the root, and nothing public sits at the root
without being exported (submodules aside: they are reached as `orchestrator.x`, not exported).
Each exported name is then held to what callers rely on, so a broken re-export or a renamed
operation fails here rather than in a caller's code.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pydantic
import pytest

import orchestrator
from orchestrator import api, checkout, config, errors, request, retention, sync
from orchestrator.store import actions, changes, database

EXPECTED = {
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
    "RetryCandidate",
    "RetryRefused",
    "RetryReport",
    "PruneReport",
    "SchemaNotMigrated",
    "Settings",
    "SyncOrchestrator",
    "VioletError",
    "load_settings",
    "migrate",
    "prune",
}

# The operations both front doors offer (README "Library use"); the async one awaits each.
OPERATIONS = (
    "open",
    "close",
    "migrate",
    "start",
    "run",
    "get",
    "history",
    "cancel",
    "confirm_payment",
    "provide_payment",
    "payment_secret",
    "cancel_bag",
    "refund_bag",
    "bag_actions",
    "changes",
    "retry",
    "retry_many",
)


def _public_names_at_root() -> set[str]:
    for name in orchestrator.__all__:
        getattr(orchestrator, name)  # the root loads its names on first use (PEP 562)
    return {
        name
        for name, value in vars(orchestrator).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }


def test_all_lists_exactly_the_deliberate_public_api_once() -> None:
    assert sorted(orchestrator.__all__) == sorted(EXPECTED)
    assert len(orchestrator.__all__) == len(set(orchestrator.__all__))


def test_a_star_import_gives_every_exported_name() -> None:
    namespace: dict[str, Any] = {}
    exec("from orchestrator import *", namespace)  # AttributeError for a name not at the root
    assert set(namespace) - {"__builtins__"} == EXPECTED


def test_nothing_public_at_the_root_is_left_unexported() -> None:
    assert _public_names_at_root() == set(orchestrator.__all__)


def test_each_exported_name_is_the_object_its_module_defines() -> None:
    homes = {
        "Orchestrator": api,
        "SyncOrchestrator": sync,
        "Checkout": checkout,
        "AuditEvent": checkout,
        "RetryCandidate": checkout,
        "RetryReport": checkout,
        "Change": changes,
        "CheckoutRequest": request,
        "Settings": config,
        "load_settings": config,
        "migrate": database,
        "BagAction": actions,
        "prune": retention,
        "PruneReport": retention,
    }
    for name in EXPECTED:
        home = homes.get(name, errors)
        assert getattr(orchestrator, name) is getattr(home, name), name


# Each exported error's bases: the one root, and beneath it subclasses by meaning.
ERROR_TREE: dict[str, tuple[type | str, ...]] = {
    "OrchestratorError": (Exception,),
    "ConfigError": ("OrchestratorError",),
    "CheckoutNotFound": ("OrchestratorError",),
    "CheckoutBusy": ("OrchestratorError",),
    "CheckoutConflict": ("OrchestratorError",),
    "IllegalTransition": ("OrchestratorError",),
    "PaymentNotConfirmed": ("IllegalTransition",),
    "RetryRefused": ("IllegalTransition",),
    "LeaseLost": ("OrchestratorError",),
    "DatabaseUnavailable": ("OrchestratorError",),
    "SchemaNotMigrated": ("OrchestratorError",),
    "OwnerRoleRequired": ("ConfigError",),
    "InvalidRequest": ("OrchestratorError", ValueError),
    "VioletError": ("OrchestratorError",),
}


@pytest.mark.parametrize(("name", "bases"), ERROR_TREE.items())
def test_each_exported_error_has_its_documented_place_in_the_tree(
    name: str, bases: tuple[type | str, ...]
) -> None:
    expected = tuple(getattr(orchestrator, b) if isinstance(b, str) else b for b in bases)
    assert getattr(orchestrator, name).__bases__ == expected


def test_every_exported_exception_has_a_place_in_the_tree() -> None:
    exported = {
        name
        for name in orchestrator.__all__
        if isinstance(getattr(orchestrator, name), type)
        and issubclass(getattr(orchestrator, name), BaseException)
    }
    assert exported == set(ERROR_TREE)


@pytest.mark.parametrize("name", OPERATIONS)
def test_both_front_doors_offer_each_operation(name: str) -> None:
    assert inspect.iscoroutinefunction(getattr(orchestrator.Orchestrator, name)), name
    method = getattr(orchestrator.SyncOrchestrator, name)
    assert callable(method) and not inspect.iscoroutinefunction(method), name


def test_both_front_doors_follow_the_changes_feed() -> None:
    assert inspect.isasyncgenfunction(orchestrator.Orchestrator.follow)
    assert inspect.isgeneratorfunction(orchestrator.SyncOrchestrator.follow)
    for front_door in (orchestrator.Orchestrator, orchestrator.SyncOrchestrator):
        for name in ("changes", "follow"):
            after = inspect.signature(getattr(front_door, name)).parameters["after"]
            assert after.default == "0:0", (front_door, name)


def test_the_front_doors_are_context_managers_that_start_and_run_by_default() -> None:
    assert inspect.iscoroutinefunction(orchestrator.Orchestrator.__aenter__)
    assert callable(orchestrator.SyncOrchestrator.__enter__)
    for front_door in (orchestrator.Orchestrator, orchestrator.SyncOrchestrator):
        run = inspect.signature(front_door.start).parameters["run"]
        assert (run.kind, run.default) == (inspect.Parameter.KEYWORD_ONLY, True)


def test_checkouts_and_audit_events_are_frozen_records_with_json() -> None:
    records = (
        orchestrator.Checkout,
        orchestrator.AuditEvent,
        orchestrator.BagAction,
        orchestrator.RetryReport,
        orchestrator.RetryCandidate,
    )
    for record in (*records, orchestrator.Change):
        assert dataclasses.is_dataclass(record)
        assert vars(record)["__dataclass_params__"].frozen
        assert callable(record.to_json)
    fields = {f.name for f in dataclasses.fields(orchestrator.Checkout)}
    assert {"id", "app_order_id", "state"} <= fields


def test_requests_and_settings_validate() -> None:
    assert issubclass(orchestrator.CheckoutRequest, pydantic.BaseModel)
    with pytest.raises(orchestrator.InvalidRequest, match="skus"):
        orchestrator.CheckoutRequest.parse({})
    settings = orchestrator.load_settings(max_retry_after=30)
    assert isinstance(settings, orchestrator.Settings)
    assert settings.max_retry_after == 30
    with pytest.raises(orchestrator.ConfigError, match="ORCHESTRATOR_MAX_RETRY_AFTER"):
        orchestrator.load_settings(max_retry_after="soon")


def test_prune_takes_the_owners_url_and_keyword_options() -> None:
    """Retention (docs/operations.md): the owner's URL, the window in days, a dry run."""
    assert inspect.iscoroutinefunction(orchestrator.prune)
    parameters = inspect.signature(orchestrator.prune).parameters
    assert next(iter(parameters)) == "database_url"
    assert {"older_than_days", "batch", "dry_run"} <= set(parameters)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(parameters.values())[1:])
    assert callable(orchestrator.PruneReport.to_json)


def test_migrate_takes_a_url_and_an_optional_revision() -> None:
    parameters = inspect.signature(orchestrator.migrate).parameters
    assert list(parameters) == ["url", "revision"]
    assert parameters["revision"].default == "head"
