"""Leases: renewed while a slow Violet call runs, fenced so a late writer is refused, and
given back by a command that finds nothing to drive."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import CheckoutBusy, LeaseLost, Orchestrator
from orchestrator.config import Settings
from orchestrator.sandbox import SandboxControl
from orchestrator.store.repository import Repository
from tests.fixtures.db import libpq_url
from tests.fixtures.orchestrator import DIGITAL, INTENT, TOKEN, checkout_request, make_settings


async def test_lease_is_renewed_while_a_slow_call_runs(
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> None:
    settings = make_settings(database_url, "http://sandbox/v1", lease_seconds=0.6)
    await sandbox_control.add_fault("price", "latency", count=1, latency_ms=1800)
    async with (
        Orchestrator(settings, violet_transport=sandbox_transport) as first,
        Orchestrator(settings, violet_transport=sandbox_transport) as second,
    ):
        registered = await first.start(checkout_request(payment=TOKEN), run=False)
        driving = asyncio.create_task(first.run(registered.id))
        await asyncio.sleep(1.2)  # two lease lengths into the slow call
        with pytest.raises(CheckoutBusy):
            await second.run(registered.id)
        done = await driving
    assert done.state == "submitted"
    kinds = [e.kind for e in await second_history(settings, sandbox_transport, done.id)]
    assert "lease_taken_over" not in kinds


async def second_history(
    settings: Settings, transport: httpx.AsyncBaseTransport, ref: object
) -> list:  # type: ignore[type-arg]
    async with Orchestrator(settings, violet_transport=transport) as orch:
        return await orch.history(str(ref))


async def test_a_worker_that_lost_its_lease_cannot_write(
    database_url: str, sandbox_transport: httpx.AsyncBaseTransport
) -> None:
    settings = make_settings(database_url, "http://sandbox/v1", lease_seconds=0.3)
    async with (
        Orchestrator(settings, violet_transport=sandbox_transport) as stale,
        Orchestrator(settings, violet_transport=sandbox_transport) as fresh,
    ):
        registered = await stale.start(checkout_request(payment=TOKEN), run=False)
        claim = await stale.repo.claim(registered.id, worker=stale.worker_id, lease_seconds=0.3)
        await asyncio.sleep(0.5)  # the stale worker pauses past its lease (no renewal running)
        done = await fresh.run(registered.id)
        assert done.state == "submitted"
        with pytest.raises(LeaseLost):
            await stale.runner.drive(claim.row)
        after = await fresh.get(registered.id)
    assert after.state == "submitted"
    assert after.updated_at == done.updated_at


async def test_a_claim_abandoned_before_any_write_is_found_again_after_its_lease(
    database_url: str, sandbox_transport: httpx.AsyncBaseTransport
) -> None:
    """A claim leaves `next_attempt_at` alone (so it can be a HOT update), except on a row that
    was never due: one a worker claimed and then died holding must still come back to the
    recovery scan once the lease expired -- and not a moment before."""
    settings = make_settings(database_url, "http://sandbox/v1", lease_seconds=0.4)
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        waiting = await orch.start(checkout_request(payment=TOKEN), run=False)
        due = await orch.start(checkout_request(payment=TOKEN), run=False)
        async with orch.engine.begin() as conn:  # one row at rest with no due time
            await conn.exec_driver_sql(
                "UPDATE checkouts SET next_attempt_at = NULL WHERE id = %(id)s", {"id": waiting.id}
            )
        for checkout in (waiting, due):  # claimed by a worker that then dies
            await orch.repo.claim(checkout.id, worker="dead-worker", lease_seconds=0.4)
        assert await orch.repo.claim_due(worker="w", limit=10, lease_seconds=5) == []
        next_due = await orch.repo.next_due_at()
        assert next_due is not None and next_due > datetime.now(UTC)  # the lease expiry, not before
        await asyncio.sleep(0.6)
        claims = await orch.repo.claim_due(worker="w", limit=10, lease_seconds=5)
        assert {c.row.id for c in claims} == {waiting.id, due.id}
        assert all(c.previous_owner == "dead-worker" for c in claims)


async def test_a_claim_meeting_a_writers_row_lock_is_busy(
    orch: Orchestrator, database_url: str, engine: AsyncEngine
) -> None:
    registered = await orch.start(checkout_request(payment=TOKEN), run=False)
    with psycopg.connect(libpq_url(database_url)) as holder:
        holder.execute("SELECT 1 FROM checkouts WHERE id = %s FOR UPDATE", (registered.id,))
        with pytest.raises(CheckoutBusy, match="being written by another worker"):
            await Repository(engine).claim(registered.id, worker="w", lease_seconds=5)
        holder.rollback()


async def test_a_claim_failing_for_another_reason_is_not_called_busy(engine: AsyncEngine) -> None:
    """Busy is PostgreSQL's lock_not_available, not an error whose text quotes its words (the
    engine's errors echo the statement's parameters, here a worker name)."""
    with pytest.raises(sqlalchemy.exc.DataError):  # NUL in a text parameter
        await Repository(engine).claim(
            uuid.uuid4(), worker="could not obtain lock\x00", lease_seconds=5
        )


async def test_run_racing_a_drive_to_a_waiting_state_does_not_keep_the_lease(
    settings: Settings,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`run()` reads the row, then claims it; when another worker parks it meanwhile (here in
    `awaiting_confirmation`, lease released, not due), the claim finds nothing to drive and
    gives the lease back: the shopper's `confirm_payment` is not refused as busy, and recovery
    never sees a `lease_taken_over` of a checkout nobody was driving."""
    async with (
        Orchestrator(settings, violet_transport=sandbox_transport) as owner,
        Orchestrator(settings, violet_transport=sandbox_transport) as other,
    ):
        registered = await owner.start(checkout_request(skus=DIGITAL, payment=INTENT), run=False)
        real_claim = owner.repo.claim

        async def claim_after_another_worker_parked_it(checkout_id: Any, **kwargs: Any) -> Any:
            parked = await other.run(checkout_id)  # lands between run()'s read and its claim
            assert parked.state == "awaiting_confirmation"
            return await real_claim(checkout_id, **kwargs)

        monkeypatch.setattr(owner.repo, "claim", claim_after_another_worker_parked_it)
        result = await owner.run(registered.id)
        monkeypatch.setattr(owner.repo, "claim", real_claim)
        assert result.state == "awaiting_confirmation"
        row = await owner.repo.get(registered.id)
        assert row is not None
        await sandbox_control.confirm_payment(result.violet_order_id)  # the shopper confirms
        busy = None
        try:
            await other.confirm_payment(registered.id)
        except CheckoutBusy as exc:
            busy = exc
    assert (row.lease_owner, row.next_attempt_at) == (None, None), (
        f"run() kept the lease of a waiting checkout until {row.lease_expires_at}"
    )
    assert busy is None, f"the shopper's confirm_payment was refused: {busy}"
