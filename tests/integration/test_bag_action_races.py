"""Two callers acting on one bag at once: one cancel or refund is sent, never two.

The checks run before the lease (a refusal takes none) and again under it, a refund against
Violet's bag read again there: of two callers, the one that takes the lease second finds the
first one's action (open, or settled with what it did to the bag) and is refused. Each test
pauses caller B between its first checks and its claim, the window a scheduler can open, and
runs caller A to the end meanwhile. Real PostgreSQL and the project's Violet sandbox (in-process
ASGI), which counts the cancels and refunds it receives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from orchestrator import BagAction, InvalidRequest
from orchestrator.api import Orchestrator
from orchestrator.checkout import Checkout
from orchestrator.engine import actions as engine_actions
from orchestrator.sandbox import SandboxControl
from tests.fixtures.orchestrator import TOKEN, checkout_request


async def submitted(orch: Orchestrator) -> tuple[Checkout, int, int]:
    checkout = await orch.start(checkout_request(payment=TOKEN))
    assert checkout.state == "submitted", checkout.last_error
    assert checkout.violet_order_id is not None
    return checkout, int(checkout.bags[0]["bag_id"]), int(checkout.bags[0]["total"])


async def paused_before_claim(
    monkeypatch: pytest.MonkeyPatch,
    other: Orchestrator,
    b_acts: Callable[[Orchestrator], Awaitable[BagAction]],
    meanwhile: Callable[[], Awaitable[Any]],
) -> BaseException | BagAction:
    """Run B's action until its claim, then `meanwhile` (A) to the end, then B; B's outcome."""
    checked, go = asyncio.Event(), asyncio.Event()
    real_claim = engine_actions.store.claim

    async def unlucky_claim(engine: Any, checkout_id: Any, *, worker: str, **kw: Any) -> Any:
        if worker == other.worker.id and not go.is_set():
            checked.set()
            await go.wait()  # B's first checks are done; the scheduler runs A meanwhile
        return await real_claim(engine, checkout_id, worker=worker, **kw)

    monkeypatch.setattr(engine_actions.store, "claim", unlucky_claim)
    b = asyncio.create_task(b_acts(other))
    await asyncio.wait_for(checked.wait(), 10)
    await meanwhile()
    go.set()
    try:
        return await asyncio.wait_for(b, 10)
    except Exception as exc:  # refused: what should happen
        return exc


async def test_two_concurrent_cancels_of_one_bag_send_one_cancel(
    orch: Orchestrator,
    settings: Any,
    sandbox_transport: Any,
    sandbox_control: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """B checks (the bag ACCEPTED as recorded, no open action) and pauses before its claim; A's
    cancel runs to the end (succeeded, lease released). B claims the free lease, checks again,
    finds A's succeeded cancel and is refused: one cancel reaches Violet."""
    checkout, bag_id, _ = await submitted(orch)

    async def a_cancels() -> None:
        first = await orch.cancel_bag(checkout.id, bag_id, actor="support:a")
        assert first.state == "succeeded"

    async with Orchestrator(settings, violet_transport=sandbox_transport, worker_id="B") as other:
        outcome = await paused_before_claim(
            monkeypatch,
            other,
            lambda b: b.cancel_bag(checkout.id, bag_id, actor="support:b"),
            a_cancels,
        )

    stats = await sandbox_control.stats()
    assert stats["bag_cancels"] == {str(bag_id): 1}, f"two cancels sent; the second: {outcome!r}"
    assert isinstance(outcome, InvalidRequest) and "CANCELED" in str(outcome), outcome
    assert len(await orch.bag_actions(checkout.id)) == 1
    assert (await orch.get(checkout.id)).lease_owner is None  # B gave its lease back


async def test_a_refund_racing_a_cancel_of_the_same_bag_is_not_sent(
    orch: Orchestrator,
    settings: Any,
    sandbox_transport: Any,
    sandbox_control: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """B refunds the bag, A cancels it. B's first checks (stored bag, Violet's order) pass and B
    pauses right after reading Violet's order; A's cancel runs to the end. B then takes the
    free lease and is refused there: the bag is canceled (A's action, and Violet's bag read
    again), so no refund is sent against figures that are no longer true."""
    checkout, bag_id, _ = await submitted(orch)
    checked, go = asyncio.Event(), asyncio.Event()
    async with Orchestrator(settings, violet_transport=sandbox_transport, worker_id="B") as other:
        real = other.worker.client.get_order
        calls = 0

        async def paused_get_order(order_id: int) -> Any:
            nonlocal calls
            calls += 1
            answer = await real(order_id)
            if calls == 1:  # the refund's check, before its lease: the scheduler pauses B
                checked.set()
                await go.wait()
            return answer

        monkeypatch.setattr(other.worker.client, "get_order", paused_get_order)
        refund = asyncio.create_task(
            other.refund_bag(checkout.id, bag_id, actor="support:b", amount=100)
        )
        await asyncio.wait_for(checked.wait(), 10)
        cancel = await orch.cancel_bag(checkout.id, bag_id, actor="support:a")
        assert cancel.state == "succeeded"
        go.set()
        outcome: Any
        try:
            outcome = await asyncio.wait_for(refund, 10)
        except Exception as exc:  # refused: what should happen
            outcome = exc
    stats = await sandbox_control.stats()
    assert stats["bag_cancels"] == {str(bag_id): 1}
    assert stats["bag_refunds"] == {}, f"a refund was sent to a bag just canceled: {outcome!r}"
    assert isinstance(outcome, InvalidRequest), outcome


async def test_two_concurrent_partial_refunds_never_add_up_past_the_bag_total(
    orch: Orchestrator,
    settings: Any,
    sandbox_transport: Any,
    sandbox_control: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each asks all but 100 of the bag; each alone is right. B's first checks pass, then A's
    refund succeeds; under its lease B finds only 100 left and is refused naming `amount`."""
    checkout, bag_id, total = await submitted(orch)
    amount = total - 100

    async def a_refunds() -> None:
        first = await orch.refund_bag(checkout.id, bag_id, actor="support:a", amount=amount)
        assert first.state == "succeeded"

    async with Orchestrator(settings, violet_transport=sandbox_transport, worker_id="B") as other:
        outcome = await paused_before_claim(
            monkeypatch,
            other,
            lambda b: b.refund_bag(checkout.id, bag_id, actor="support:b", amount=amount),
            a_refunds,
        )

    assert (await sandbox_control.stats())["bag_refunds"] == {str(bag_id): 1}, outcome
    assert isinstance(outcome, InvalidRequest), outcome
    assert [name for name, _ in outcome.fields] == ["amount"]


async def test_a_refund_checked_against_figures_violet_changed_meanwhile_is_refused(
    orch: Orchestrator,
    settings: Any,
    sandbox_transport: Any,
    sandbox_control: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The merchant refunds the whole bag at Violet itself (nothing the orchestrator asked or
    recorded) while B is paused before its claim: only Violet's bag, read again under the
    lease, shows it, and B is refused."""
    checkout, bag_id, _ = await submitted(orch)
    assert checkout.violet_order_id is not None
    order_id = checkout.violet_order_id

    async def merchant_refunds() -> None:
        await sandbox_control.move_bag(order_id, bag_id, "refund")

    async with Orchestrator(settings, violet_transport=sandbox_transport, worker_id="B") as other:
        outcome = await paused_before_claim(
            monkeypatch,
            other,
            lambda b: b.refund_bag(checkout.id, bag_id, actor="support:b", amount=100),
            merchant_refunds,
        )

    assert isinstance(outcome, InvalidRequest) and "at Violet" in str(outcome), outcome
    assert (await sandbox_control.stats())["bag_refunds"] == {}
    assert await orch.bag_actions(checkout.id) == []
