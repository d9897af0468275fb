"""The engine's view of the store (`EngineStore`): the PostgreSQL repository and the in-memory
one both satisfy it, and the in-memory one keeps the store's rules the runner relies on."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

import pytest

from orchestrator import states
from orchestrator.engine.ports import EngineStore
from orchestrator.errors import LeaseLost
from orchestrator.store.records import CheckoutRow, Event
from orchestrator.store.repository import Repository
from orchestrator.store.schema import SQLSTATE_APPEND_ONLY, SQLSTATE_ILLEGAL_TRANSITION
from tests.fakes.repository import FakeClock, FakeRepository, StoreRefused


def _fake_is_an_engine_store(store: FakeRepository) -> EngineStore:
    # mypy checks this module's assignment; orchestrator/engine/ports.py does it for Repository.
    return store


def _protocol_members() -> list[str]:
    return sorted(
        name
        for name, value in vars(EngineStore).items()
        if inspect.isfunction(value) and not name.startswith("_")
    )


def _mismatches(implementation: type) -> list[str]:
    """How `implementation` differs from the protocol: a missing method, another signature
    (names, kinds, defaults, annotations), or `async def` where a coroutine is returned."""
    found = []
    for name in _protocol_members():
        wanted = getattr(EngineStore, name)
        given = getattr(implementation, name, None)
        if given is None:
            found.append(f"{name}: missing")
            continue
        if inspect.signature(given) != inspect.signature(wanted):
            found.append(f"{name}: {inspect.signature(given)} != {inspect.signature(wanted)}")
        if inspect.iscoroutinefunction(given) != inspect.iscoroutinefunction(wanted):
            found.append(f"{name}: async def differs")
    return found


def test_the_protocol_names_what_the_engine_calls() -> None:
    assert _protocol_members() == ["renew", "write"]


@pytest.mark.parametrize("implementation", [Repository, FakeRepository])
def test_store_satisfies_the_engine_store(implementation: type) -> None:
    assert _mismatches(implementation) == []


class _ReadsTheRowLate:
    """A write that would read the row only when awaited, and a renew with another keyword."""

    async def write(
        self,
        row: CheckoutRow,
        events: Sequence[Event],
        *,
        worker: str,
        lease_seconds: float,
        keep_lease: bool,
        start_step: bool = False,
        send_seconds: float | None = None,
        due_in: float | None = None,
        terminal: bool = False,
    ) -> None: ...

    async def renew(
        self, ids: Sequence[uuid.UUID], *, owner: str, lease_seconds: float
    ) -> set[uuid.UUID]:
        return set()


def test_the_check_refuses_a_store_that_differs() -> None:
    found = _mismatches(_ReadsTheRowLate)
    assert [line.split(":")[0] for line in found] == ["renew", "write", "write"]


# -- the in-memory store's rules --------------------------------------------------------------

WORKER = "worker-a"


@pytest.fixture
async def leased() -> AsyncIterator[tuple[FakeRepository, CheckoutRow]]:
    store = FakeRepository(FakeClock())
    row = CheckoutRow.registered(
        app_order_id="fake-1",
        request={},
        payment_kind="token",
        currency="USD",
        first_step=states.CREATE_CART,
        run=True,
    )
    inserted = await store.insert(
        row, [Event("created")], worker=WORKER, lease_seconds=30.0, leased=True
    )
    assert inserted is not None
    yield store, inserted


def _write(store: FakeRepository, row: CheckoutRow, **options: Any) -> Coroutine[Any, Any, None]:
    options.setdefault("keep_lease", True)
    return store.write(row, [Event("note")], worker=WORKER, lease_seconds=30.0, **options)


async def test_a_stale_epoch_stores_nothing(
    leased: tuple[FakeRepository, CheckoutRow],
) -> None:
    store, row = leased
    assert isinstance(store.clock, FakeClock)
    store.clock.advance(31)
    await store.claim(row.id, worker="worker-b", lease_seconds=30.0)
    before = await store.events(row.id)
    row.state = states.CREATED

    with pytest.raises(LeaseLost):
        await _write(store, row)

    assert row.event_seq == 1
    assert await store.events(row.id) == before
    stored = await store.get(row.id)
    assert stored is not None and stored.state == states.NEW


@pytest.mark.parametrize(
    ("first", "then", "sqlstate"),
    [
        (None, states.SUBMITTED, SQLSTATE_ILLEGAL_TRANSITION),
        (states.CREATED, states.NEW, SQLSTATE_ILLEGAL_TRANSITION),
        (states.FAILED, states.FAILED, SQLSTATE_APPEND_ONLY),
    ],
)
async def test_moves_outside_the_graph_and_writes_to_finished_rows_are_refused(
    leased: tuple[FakeRepository, CheckoutRow], first: str | None, then: str, sqlstate: str
) -> None:
    store, row = leased
    if first is not None:
        row.state = first
        await _write(store, row)
    seq = row.event_seq
    row.state = then

    with pytest.raises(StoreRefused) as refused:
        await _write(store, row)

    assert refused.value.sqlstate == sqlstate
    assert row.event_seq == seq
    stored = await store.get(row.id)
    assert stored is not None and stored.state == (first or states.NEW)


async def test_an_event_seq_is_stored_once(leased: tuple[FakeRepository, CheckoutRow]) -> None:
    store, row = leased
    await _write(store, row)
    row.event_seq -= 1  # a copy that missed its own last write would reuse that seq

    with pytest.raises(StoreRefused):
        await _write(store, row)

    assert row.event_seq == 1
    assert [e["seq"] for e in await store.events(row.id)] == [1, 2]


async def test_the_row_is_read_when_the_write_is_made(
    leased: tuple[FakeRepository, CheckoutRow],
) -> None:
    store, row = leased
    row.state = states.CREATED
    write = _write(store, row)
    row.state = states.CUSTOMER_APPLIED  # the runner goes on while the write runs behind

    await write

    stored = await store.get(row.id)
    assert stored is not None and stored.state == states.CREATED


async def test_due_times_come_from_the_clock(leased: tuple[FakeRepository, CheckoutRow]) -> None:
    store, row = leased
    now = store.clock()

    await _write(store, row, keep_lease=False, due_in=2.5)

    stored = await store.get(row.id)
    assert stored is not None and stored.next_attempt_at is not None
    assert (stored.next_attempt_at - now).total_seconds() == 2.5
    assert stored.lease_owner is None and stored.lease_expires_at is None
    assert row.local_lease_until is None
