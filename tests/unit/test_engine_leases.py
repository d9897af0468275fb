"""The lease keeper against the in-memory store: it renews only leases still ours, and gives a
lease back with a fenced write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from orchestrator import states
from orchestrator.clock import local_clock
from orchestrator.engine.leases import LeaseKeeper
from orchestrator.errors import LeaseLost
from orchestrator.store.records import CheckoutRow, Event
from tests.fakes.repository import FakeClock, FakeRepository

WORKER = "worker-a"
#: Renewals every third of it: a few run within a short sleep.
LEASE = 0.03


@pytest.fixture
async def setup() -> AsyncIterator[tuple[FakeRepository, FakeClock, LeaseKeeper, CheckoutRow]]:
    clock = FakeClock()
    store = FakeRepository(clock)
    keeper = LeaseKeeper(store, worker=WORKER, lease_seconds=LEASE)
    row = CheckoutRow.registered(
        app_order_id="lease-1",
        request={},
        payment_kind="token",
        currency="USD",
        first_step=states.CREATE_CART,
        run=True,
    )
    inserted = await store.insert(
        row, [Event("created")], worker=WORKER, lease_seconds=LEASE, leased=True
    )
    assert inserted is not None
    yield store, clock, keeper, inserted
    await keeper.close()


async def test_a_held_lease_is_renewed_while_the_block_runs(
    setup: tuple[FakeRepository, FakeClock, LeaseKeeper, CheckoutRow],
) -> None:
    store, clock, keeper, row = setup
    clock.advance(10)  # the insert's lease is long gone by the database's clock
    before = local_clock()

    with keeper.holding(row.id):
        await asyncio.sleep(LEASE * 2)
        renewed = keeper.renewed_until(row.id)
        stored = await store.get(row.id)

    assert stored is not None and stored.lease_expires_at == clock.now + timedelta(seconds=LEASE)
    assert renewed is not None and renewed >= before + LEASE
    assert keeper.renewed_until(row.id) is None  # forgotten once the hold ends


async def test_a_lease_taken_over_is_not_renewed(
    setup: tuple[FakeRepository, FakeClock, LeaseKeeper, CheckoutRow],
) -> None:
    store, clock, keeper, row = setup
    clock.advance(10)
    taken = await store.claim(row.id, worker="worker-b", lease_seconds=LEASE)
    clock.advance(1)

    with keeper.holding(row.id):
        await asyncio.sleep(LEASE * 2)
        assert keeper.renewed_until(row.id) is None

    stored = await store.get(row.id)
    assert stored is not None
    assert (stored.lease_owner, stored.lease_expires_at) == (
        "worker-b",
        taken.row.lease_expires_at,
    )


async def test_release_gives_the_lease_back_with_a_fenced_write(
    setup: tuple[FakeRepository, FakeClock, LeaseKeeper, CheckoutRow],
) -> None:
    store, clock, keeper, row = setup

    await keeper.release(row, due_in=0.0)

    stored = await store.get(row.id)
    assert stored is not None
    assert (stored.lease_owner, stored.next_attempt_at) == (None, clock.now)
    assert (await store.events(row.id))[-1]["kind"] == "lease_released"
    clock.advance(1)
    await store.claim(row.id, worker="worker-b", lease_seconds=LEASE)
    with pytest.raises(LeaseLost):
        await keeper.release(row, due_in=0.0)  # our epoch is over: the other lease stays
    stored = await store.get(row.id)
    assert stored is not None and stored.lease_owner == "worker-b"
