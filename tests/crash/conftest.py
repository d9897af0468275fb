"""Fixtures for the crash tests: the environment children get, and what every case must hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.api import Orchestrator
from orchestrator.checkout import Checkout
from orchestrator.states import TERMINAL_STATES, WAITING_STATES
from orchestrator.verify import verify
from tests.fixtures.orchestrator import make_settings
from tests.fixtures.sandbox import HttpSandbox, violet_credentials_env

LEASE_SECONDS = 1.5


@pytest.fixture
def crash_env(database_url: str, http_sandbox: HttpSandbox) -> dict[str, str]:
    """Settings for child processes: short leases so takeovers happen within a second or two."""
    return {
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "VIOLET_BASE_URL": http_sandbox.base_url,
        **violet_credentials_env(),
        "ORCHESTRATOR_LEASE_SECONDS": str(LEASE_SECONDS),
        "ORCHESTRATOR_SUBMIT_SETTLE_SECONDS": "0.3",
        "ORCHESTRATOR_BACKOFF_BASE": "0.02",
        "ORCHESTRATOR_BACKOFF_CAP": "0.2",
        "ORCHESTRATOR_MAX_ATTEMPTS": "20",
        "VIOLET_READ_TIMEOUT": "5",
        "VIOLET_TOTAL_TIMEOUT": "2",  # the settle window is 2 x this + the settle time
        "ORCHESTRATOR_TEST_MODE": "1",
    }


@pytest.fixture
async def observer(database_url: str, http_sandbox: HttpSandbox) -> Any:
    """An in-process Orchestrator on the same database and HTTP sandbox, to inspect results."""
    settings = make_settings(database_url, http_sandbox.base_url)
    async with Orchestrator(settings) as orch:
        yield orch


def summary_of(log: str) -> dict[str, Any]:
    """The one-line JSON summary a `recover --json` process printed."""
    lines = [line for line in log.splitlines() if line.startswith('{"claimed"')]
    assert lines, f"no JSON summary in:\n{log}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def assert_exactly_once(
    orch: Orchestrator,
    sandbox: HttpSandbox,
    expected: dict[str, str] | None = None,
    *,
    recovered: list[str] = (),  # type: ignore[assignment]
) -> list[Checkout]:
    """What every crash case must end with.

    Every checkout terminal or waiting with a reason, none leased or in flight; each
    app_order_id created once at Violet and each cart submitted at most once; local state agrees
    with Violet (verify: zero drift); `recovered` ones show a takeover and a reconciliation.
    """
    async with orch.engine.connect() as conn:
        result = await conn.exec_driver_sql("SELECT app_order_id FROM checkouts ORDER BY 1")
        ids = [r[0] for r in result.all()]
    checkouts = [await orch.get(app_order_id) for app_order_id in ids]
    for c in checkouts:
        where = f"{c.app_order_id}: {c.state} {c.pending_step} {c.last_error}"
        assert c.state in TERMINAL_STATES or c.state in WAITING_STATES, where
        if c.state in WAITING_STATES:
            assert c.waiting_reason, where
        assert c.lease_owner is None and not c.in_flight, where
    if expected is not None:
        assert {c.app_order_id: c.state for c in checkouts} == expected
    stats = await sandbox.control.stats()
    created = stats["carts_by_app_order_id"]
    assert all(len(carts) <= 1 for carts in created.values()), created
    assert all(count <= 1 for count in stats["submits"].values()), stats["submits"]
    assert stats["duplicate_submits"] == {}
    for c in checkouts:
        if c.state == "submitted":
            assert stats["submits"].get(str(c.violet_order_id)) == 1, c.app_order_id
    report = await verify(orch.worker, check_duplicates=True)
    assert report.drift == 0 and report.ok, report.to_json()
    assert report.duplicate_carts == {}
    for app_order_id in recovered:
        kinds = {e.kind for e in await orch.history(app_order_id)}
        assert {"lease_taken_over", "reconciled"} <= kinds, (app_order_id, kinds)
    return checkouts


def log_path(tmp_path: Path, name: str) -> Path:
    return tmp_path / f"{name}.log"
