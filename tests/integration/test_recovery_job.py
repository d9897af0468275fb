"""The recovery job in-process: what it claims, what it leaves alone, how it stops and waits."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest

from orchestrator.api import Orchestrator
from orchestrator.config import Settings
from orchestrator.errors import DatabaseUnavailable
from orchestrator.recovery import RecoveryJob, RecoverySummary, open_with_retry
from orchestrator.sandbox import SandboxControl
from orchestrator.store.database import create_engine
from orchestrator.store.repository import Repository
from tests.fixtures.orchestrator import DIGITAL, INTENT, TOKEN, checkout_request, make_settings


async def _register(orch: Orchestrator, n: int, **kwargs: Any) -> list[str]:
    ids = []
    for _ in range(n):
        checkout = await orch.start(
            checkout_request(skus=DIGITAL, payment=TOKEN, **kwargs), run=False
        )
        ids.append(checkout.app_order_id)
    return ids


async def _sql(orch: Orchestrator, statement: str, params: dict[str, Any] | None = None) -> None:
    async with orch.engine.begin() as conn:
        await conn.exec_driver_sql(statement, params or {})


async def _crash_in_flight(orch: Orchestrator, app_order_id: str, *, recoveries: int = 0) -> None:
    """Make a checkout look like its worker died mid-step: in flight, lease held, expired."""
    await _sql(
        orch,
        "UPDATE checkouts SET lease_owner = 'dead-worker', in_flight = true, attempt = 1, "
        "lease_expires_at = now() - interval '1 second', step_started_at = now() - interval '1 h', "
        "next_attempt_at = now() - interval '1 second', recoveries = %(r)s "
        "WHERE app_order_id = %(a)s",
        {"r": recoveries, "a": app_order_id},
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_due_checkouts_are_driven_to_the_end_and_counted(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    ids = await _register(orch, 5)
    seen: list[int] = []
    summary = await RecoveryJob(orch.worker).run(
        "until-idle", concurrency=2, progress=lambda s: seen.append(s.submitted)
    )
    assert summary.claimed == 5
    assert summary.submitted == 5 and summary.advanced == 5
    assert summary.failed == summary.errors == summary.reconciled == summary.still_due == 0
    assert sorted(seen) == [1, 2, 3, 4, 5]
    for app_order_id in ids:
        assert (await orch.get(app_order_id)).state == "submitted"
    stats = await sandbox_control.stats()
    assert stats["carts_created"] == 5
    assert all(count == 1 for count in stats["submits"].values())
    again = await RecoveryJob(orch.worker).run("once")
    assert again.claimed == 0


async def test_once_claims_one_batch_only(orch: Orchestrator) -> None:
    await _register(orch, 3)
    summary = await RecoveryJob(orch.worker).run("once", batch=2)
    assert summary.claimed == 2 and summary.submitted == 2
    assert summary.still_due == 1


async def test_retries_scheduled_by_a_503_are_picked_up_when_due(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("customer", "error", count=2, status=503)
    (app_order_id,) = await _register(orch, 1)
    summary = await RecoveryJob(orch.worker).run("until-idle")
    assert (await orch.get(app_order_id)).state == "submitted"
    kinds = [e.kind for e in await orch.history(app_order_id)]
    assert kinds.count("retry_scheduled") == 2
    assert summary.submitted == 1 and summary.claimed == 3  # first claim + two retries


async def test_waiting_states_are_not_claimed(orch: Orchestrator) -> None:
    checkout = await orch.start(checkout_request(skus=DIGITAL, payment=INTENT))
    assert checkout.state == "awaiting_confirmation"
    summary = await RecoveryJob(orch.worker).run("until-idle")
    assert summary.claimed == 0
    assert (await orch.get(checkout.id)).state == "awaiting_confirmation"


async def test_a_waiting_row_left_leased_by_a_crash_is_released_not_spun_on(
    orch: Orchestrator,
) -> None:
    checkout = await orch.start(checkout_request(skus=DIGITAL, payment=INTENT))
    await _sql(
        orch,
        "UPDATE checkouts SET lease_owner = 'dead-worker', "
        "lease_expires_at = now() - interval '1 s', next_attempt_at = now() - interval '1 s' "
        "WHERE id = %(id)s",
        {"id": checkout.id},
    )
    summary = await RecoveryJob(orch.worker).run("until-idle")
    assert summary.claimed == 1 and summary.waiting == 1
    row = await orch.get(checkout.id)
    assert row.state == "awaiting_confirmation"
    assert row.lease_owner is None and row.next_attempt_at is None
    assert (await RecoveryJob(orch.worker).run("until-idle")).claimed == 0


async def test_a_dead_workers_in_flight_checkout_is_taken_over_and_reconciled(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    (app_order_id,) = await _register(orch, 1)
    await _crash_in_flight(orch, app_order_id)
    summary = await RecoveryJob(orch.worker).run("until-idle")
    assert summary.taken_over == 1 and summary.reconciled == 1 and summary.submitted == 1
    events = await orch.history(app_order_id)
    kinds = [e.kind for e in events]
    assert kinds.index("lease_taken_over") < kinds.index("reconciled")
    takeover = next(e for e in events if e.kind == "lease_taken_over")
    assert takeover.detail is not None and takeover.detail["previous_owner"] == "dead-worker"
    assert takeover.detail["recoveries"] == 1
    assert (await sandbox_control.stats())["carts_created"] == 1


async def test_poison_checkout_is_parked_as_failed(orch: Orchestrator) -> None:
    (app_order_id,) = await _register(orch, 1)
    limit = orch.settings.max_recoveries
    await _crash_in_flight(orch, app_order_id, recoveries=limit)
    summary = await RecoveryJob(orch.worker).run("until-idle")
    checkout = await orch.get(app_order_id)
    assert checkout.state == "failed"
    assert checkout.last_error is not None and checkout.last_error["type"] == "poison"
    assert summary.failed == 1 and summary.reconciled == 0


async def test_one_takeover_below_the_limit_is_not_poison(orch: Orchestrator) -> None:
    (app_order_id,) = await _register(orch, 1)
    await _crash_in_flight(orch, app_order_id, recoveries=orch.settings.max_recoveries - 1)
    await RecoveryJob(orch.worker).run("until-idle")
    assert (await orch.get(app_order_id)).state == "submitted"


async def test_takeover_of_a_row_at_rest_does_not_count_as_a_recovery(
    orch: Orchestrator,
) -> None:
    (app_order_id,) = await _register(orch, 1)
    await _sql(
        orch,
        "UPDATE checkouts SET lease_owner = 'dead-worker', "
        "lease_expires_at = now() - interval '1 s', next_attempt_at = now() - interval '1 s' "
        "WHERE app_order_id = %(a)s",
        {"a": app_order_id},
    )
    claims = await orch.repo.claim_due(worker="w2", limit=10, lease_seconds=5)
    assert [c.previous_owner for c in claims] == ["dead-worker"]
    assert claims[0].row.recoveries == 0


async def test_claims_wait_while_violet_is_throttled(orch: Orchestrator) -> None:
    await _register(orch, 2)
    await orch.repo.throttle("global", 60)
    stop = asyncio.Event()
    job = asyncio.create_task(RecoveryJob(orch.worker).run("forever", poll=0.05, stop=stop))
    await asyncio.sleep(0.5)
    stop.set()
    summary = await job
    assert summary.claimed == 0 and summary.still_due == 2


async def test_a_short_throttle_delays_claims_then_everything_finishes(
    orch: Orchestrator,
) -> None:
    await _register(orch, 2)
    await orch.repo.throttle("global", 0.3)
    summary = await RecoveryJob(orch.worker).run("until-idle")
    assert summary.submitted == 2
    assert await orch.repo.throttle_until("global", cap=orch.settings.max_retry_after) is None


async def test_a_429_from_violet_throttles_every_worker(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("create_cart", "rate_limit", count=1, retry_after=30)
    await _register(orch, 1)
    summary = await RecoveryJob(orch.worker).run("once")
    assert summary.retry_scheduled == 1
    assert await orch.repo.throttle_until("global", cap=orch.settings.max_retry_after) is not None
    stop = asyncio.Event()
    stop.set()
    assert (await RecoveryJob(orch.worker).run("until-idle", stop=stop)).claimed == 0


async def test_stop_before_start_claims_nothing(orch: Orchestrator) -> None:
    await _register(orch, 2)
    stop = asyncio.Event()
    stop.set()
    summary = await RecoveryJob(orch.worker).run("forever", stop=stop)
    assert summary.claimed == 0 and summary.still_due == 2


async def test_stop_during_forever_returns_after_in_flight_drives(orch: Orchestrator) -> None:
    stop = asyncio.Event()
    job = asyncio.create_task(RecoveryJob(orch.worker).run("forever", poll=0.05, stop=stop))
    ids = await _register(orch, 3)
    for _ in range(200):
        states = [(await orch.get(a)).state for a in ids]
        if states == ["submitted"] * 3:
            break
        await asyncio.sleep(0.05)
    stop.set()
    summary = await asyncio.wait_for(job, 30)
    assert summary.submitted == 3 and summary.errors == 0


async def test_claimed_but_unstarted_checkouts_are_released_on_stop(
    orch: Orchestrator,
) -> None:
    ids = await _register(orch, 3)
    stop = asyncio.Event()
    job = RecoveryJob(orch.worker)
    claims = await orch.repo.claim_due(worker=orch.worker_id, limit=3, lease_seconds=30)
    stop.set()
    summary = RecoverySummary()
    for claim in claims:
        await job._drive_one(claim, summary, asyncio.Semaphore(1), stop, None)
    for app_order_id in ids:
        checkout = await orch.get(app_order_id)
        assert checkout.lease_owner is None and checkout.state == "new"
    assert await orch.repo.due_count() == 3


async def test_database_down_at_start_is_retried_then_reported(
    caplog: pytest.LogCaptureFixture, sandbox_transport: Any
) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/nowhere"
    settings = make_settings(url, "http://sandbox/v1")
    orch = Orchestrator(settings, violet_transport=sandbox_transport)
    caplog.set_level(logging.WARNING, logger="orchestrator.recovery")
    try:
        with pytest.raises(DatabaseUnavailable, match="cannot connect"):
            await open_with_retry(orch, give_up_after=2.0)
    finally:
        if orch._client is not None:
            await orch._client.aclose()
        if orch._engine is not None:
            await orch._engine.dispose()
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) >= 2


async def test_database_lost_mid_run_is_retried_and_nothing_is_marked_failed(
    orch: Orchestrator, caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    ids = await _register(orch, 2)
    job = RecoveryJob(orch.worker, db_retry_timeout=1.0)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/nowhere"
    dead = create_engine(url)
    job.repo = Repository(dead)
    caplog.set_level(logging.WARNING, logger="orchestrator.recovery")
    try:
        with pytest.raises(DatabaseUnavailable, match="nothing was marked failed"):
            await job.run("until-idle")
    finally:
        await dead.dispose()
    assert any("database unavailable" in r.getMessage() for r in caplog.records)
    for app_order_id in ids:
        assert (await orch.get(app_order_id)).state == "new"


async def test_summary_json_has_the_documented_fields() -> None:
    summary = RecoverySummary(claimed=3, submitted=2, failed=1, duration_s=0.123456)
    data = summary.to_json()
    for key in ("claimed", "advanced", "submitted", "failed", "reconciled", "still_due"):
        assert key in data
    assert data["duration_s"] == 0.123
    assert summary.line().startswith('{"claimed":3,')


async def test_bad_mode_is_refused(orch: Orchestrator) -> None:
    with pytest.raises(ValueError, match="mode"):
        await RecoveryJob(orch.worker).run("sometimes")  # type: ignore[arg-type]
