"""Leases: renewed while a slow Violet call runs, and fenced so a late writer is refused."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from orchestrator import CheckoutBusy, LeaseLost, Orchestrator
from orchestrator.config import Settings
from orchestrator.sandbox import SandboxControl
from tests.fixtures.orchestrator import TOKEN, checkout_request, make_settings


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
