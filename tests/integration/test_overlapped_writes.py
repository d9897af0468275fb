"""Overlapped writes: an overwrite step's outcome is committed while the next overwrite call runs.

The rule under test (runner.py): between customer, shipping, a token payment and price the write
runs behind the next call; create_cart's outcome, a card payment's intent and the submit's intent
are committed before their call. A row lock held by the test makes one write wait, and the
sandbox's call counts show which calls went ahead meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest

from orchestrator import Checkout, LeaseLost, Orchestrator
from orchestrator.sandbox import SandboxControl
from tests.fixtures.db import libpq_url
from tests.fixtures.orchestrator import TOKEN, VISA, checkout_request, make_settings


async def _wait_for_state(database_url: str, app_order_id: str, state: str) -> uuid.UUID:
    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as conn:
        for _ in range(400):
            cur = await conn.execute(
                "SELECT id, state FROM checkouts WHERE app_order_id = %s", (app_order_id,)
            )
            found = await cur.fetchone()
            if found is not None and found[1] == state:
                return uuid.UUID(str(found[0]))
            await asyncio.sleep(0.005)
    raise AssertionError(f"{app_order_id} never reached {state}")


async def _calls(control: SandboxControl, op: str) -> int:
    calls_by_op: dict[str, int] = (await control.stats())["calls_by_op"]
    return calls_by_op.get(op, 0)


async def _drive_holding_the_row_after_customer(
    database_url: str,
    transport: httpx.AsyncBaseTransport,
    control: SandboxControl,
    request: dict[str, Any],
    *,
    while_held: Callable[[], Awaitable[None]] | None = None,
) -> tuple[Checkout, uuid.UUID]:
    """Drive `request` while the test holds the row lock from customer_applied on, for 0.8 s:
    shipping (slowed to 400 ms) answers meanwhile, its outcome write waits on the lock, and
    `while_held` looks at what went ahead. Returns the finished checkout and its id."""
    settings = make_settings(database_url, "http://sandbox/v1")
    await control.add_fault("shipping_available", "latency", count=1, latency_ms=400)
    async with Orchestrator(settings, violet_transport=transport) as orch:
        driving = asyncio.create_task(orch.start(request))
        checkout_id = await _wait_for_state(
            database_url, request["app_order_id"], "customer_applied"
        )
        async with await psycopg.AsyncConnection.connect(libpq_url(database_url)) as locker:
            await locker.execute("SELECT 1 FROM checkouts WHERE id = %s FOR UPDATE", (checkout_id,))
            await asyncio.sleep(0.8)
            if while_held is not None:
                await while_held()
            await locker.rollback()
        return await driving, checkout_id


def _trail(events: list[Any]) -> list[tuple[Any, ...]]:
    return [(e.kind, e.step, e.from_state, e.to_state) for e in events]


@pytest.mark.parametrize(
    ("payment", "payment_goes_ahead"), [(TOKEN, True), (VISA, False)], ids=["token", "card"]
)
async def test_only_an_overwrite_call_goes_ahead_of_its_intent_commit(
    payment: dict[str, Any],
    payment_goes_ahead: bool,
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> None:
    counts: dict[str, int] = {}

    async def count_calls() -> None:
        for op in ("payment", "price"):
            counts[op] = await _calls(sandbox_control, op)

    done, _ = await _drive_holding_the_row_after_customer(
        database_url, sandbox_transport, sandbox_control, checkout_request(payment=payment),
        while_held=count_calls,
    )  # fmt: skip
    payments_while_locked, prices_while_locked = counts["payment"], counts["price"]
    assert done.state == "submitted"
    # A token payment is re-applied by recovery if this write were lost: it may go ahead. A card
    # lives only in memory: Violet must not see it before its intent is durable.
    assert payments_while_locked == (1 if payment_goes_ahead else 0)
    assert prices_while_locked == 0  # price waits for the payment outcome, which waits for us
    assert await _calls(sandbox_control, "submit") == 1


async def test_overlapped_and_ordered_writes_leave_the_same_trail(
    database_url: str, sandbox_transport: httpx.AsyncBaseTransport
) -> None:
    trails = []
    for overlap in (True, False):
        settings = make_settings(database_url, "http://sandbox/v1", overlap_writes=overlap)
        async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
            done = await orch.start(checkout_request(payment=TOKEN))
            assert done.state == "submitted"
            events = await orch.history(done.id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        trails.append(_trail(events))
    assert trails[0] == trails[1]


async def test_a_refused_write_behind_stops_the_drive_before_the_next_write_or_call(
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> None:
    settings = make_settings(database_url, "http://sandbox/v1")
    request = checkout_request(payment=TOKEN)
    await sandbox_control.add_fault("customer", "latency", count=1, latency_ms=300)
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        driving = asyncio.create_task(orch.start(request))
        checkout_id = await _wait_for_state(database_url, request["app_order_id"], "created")
        async with await psycopg.AsyncConnection.connect(
            libpq_url(database_url), autocommit=True
        ) as conn:  # another worker takes the checkout over during the customer call
            await conn.execute(
                "UPDATE checkouts SET lease_epoch = lease_epoch + 1 WHERE id = %s", (checkout_id,)
            )
        with pytest.raises(LeaseLost):
            await driving
        row = await orch.repo.get(checkout_id)
    assert row is not None
    assert (row.state, row.pending_step, row.in_flight) == ("created", "apply_customer", True)
    # The customer's outcome ran behind the shipping calls (overwrite: the new owner redoes
    # both); nothing after them reached Violet.
    assert await _calls(sandbox_control, "payment") == 0
    assert await _calls(sandbox_control, "submit") == 0


async def test_the_trail_starts_each_step_before_it_ends_when_its_intent_was_written_behind(
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> None:
    """The payment's intent lands only after its call (a lock holds it); the audit trail still
    has every step's start (`step_started`) before its end (`transition`), in seq order too."""
    done, checkout_id = await _drive_holding_the_row_after_customer(
        database_url, sandbox_transport, sandbox_control, checkout_request(payment=TOKEN)
    )
    assert done.state == "submitted"
    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as conn:
        cur = await conn.execute(
            "SELECT kind, step, attempt, seq, at FROM checkout_events "
            "WHERE checkout_id = %s AND kind IN ('step_started', 'transition')",
            (checkout_id,),
        )
        rows = await cur.fetchall()
    started = {
        (step, attempt): (seq, at)
        for kind, step, attempt, seq, at in rows
        if kind == "step_started"
    }
    ended = {
        (step, attempt): (seq, at) for kind, step, attempt, seq, at in rows if kind == "transition"
    }
    assert len(ended) == 6 and set(ended) <= set(started)
    assert all(started[key] < ended[key] for key in ended)
