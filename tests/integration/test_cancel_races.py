"""Cancel against steps whose outcome is unknown and against commands racing it: a canceled
checkout leaves no Violet cart behind, a refused cancel leaves no lease or recovery count
behind, and nothing reopens a checkout once it is canceled."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest

from orchestrator.api import Orchestrator
from orchestrator.config import Settings
from orchestrator.errors import IllegalTransition
from orchestrator.sandbox import SandboxControl
from tests.fixtures.db import run_sql
from tests.fixtures.orchestrator import (
    DIGITAL,
    TOKEN,
    VISA,
    checkout_request,
    one_second_calls,
    submit_applied_but_answer_lost,
)
from tests.fixtures.sandbox import HttpSandbox


async def test_cancel_with_create_cart_in_flight_releases_the_cart_violet_made(
    settings: Settings, sandbox_transport: httpx.AsyncBaseTransport, sandbox_control: SandboxControl
) -> None:
    """With create_cart in flight (answer lost) Violet may have made the cart: cancel looks it
    up by app_order_id (the create_cart reconcile rule) and releases it, so no IN_PROGRESS
    orphan is left at Violet (design §3: "an orphan ... which is recorded and released").
    While the create may still be running (its settle window), cancel is refused, saying when."""
    quick = settings.model_copy(update={"total_timeout": 0.4, "read_timeout": 0.4})
    await sandbox_control.add_fault("create_cart", "drop_after_apply", count=1)
    request = checkout_request(skus=DIGITAL, payment=TOKEN)
    async with Orchestrator(quick, violet_transport=sandbox_transport) as orch:
        first = await orch.start(request)
        assert (first.state, first.pending_step, first.in_flight) == ("new", "create_cart", True)
        with pytest.raises(IllegalTransition, match="create_cart may still be running"):
            await orch.cancel(first.id)
        assert (await orch.repo.get(first.id)).lease_owner is None  # type: ignore[union-attr]
        await asyncio.sleep(2 * 0.4 + quick.submit_settle_seconds)  # the settle window
        canceled = await orch.cancel(first.id)
    assert canceled.state == "canceled"
    stats = await sandbox_control.stats()
    (cart_id,) = stats["carts_by_app_order_id"][request["app_order_id"]]
    assert cart_id in stats["deleted_carts"], "the Violet cart of a canceled checkout was leaked"


async def test_cancel_inside_the_create_cart_settle_window_does_not_leak_the_cart(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    """A create_cart that timed out may still be running at Violet for its whole settle window.
    A cancel landing inside that window must not end the checkout `canceled` with the cart Violet
    makes afterwards left IN_PROGRESS and unreleased; it is refused (and succeeds once the
    window has passed) or it releases the cart."""
    settings = one_second_calls(database_url, http_sandbox.base_url)  # window 2.3 s
    control = http_sandbox.control
    request = checkout_request(skus=DIGITAL, payment=TOKEN)
    async with Orchestrator(settings) as orch:
        await control.add_fault("create_cart", "latency", count=1, latency_ms=1500)
        first = await orch.start(request)
        assert (first.state, first.pending_step, first.in_flight) == ("new", "create_cart", True)
        canceled = None
        with contextlib.suppress(IllegalTransition):  # refused while the create may still run
            canceled = await orch.cancel(first.id)
        await asyncio.sleep(1.5)  # the slow create finishes at Violet; the window (2.3 s) passes
        if canceled is None:
            canceled = await orch.cancel(first.id)
        stats = await control.stats()
    assert canceled.state == "canceled"
    carts = stats["carts_by_app_order_id"].get(request["app_order_id"], [])
    assert carts, "the slow create_cart never made its cart (test setup)"
    leaked = [c for c in carts if c not in stats["deleted_carts"]]
    assert leaked == [], f"canceled checkout left Violet cart(s) {leaked} IN_PROGRESS"


async def test_a_refused_cancel_of_an_in_flight_submit_leaves_nothing_behind(
    orch: Orchestrator, sandbox_control: SandboxControl, database_url: str
) -> None:
    """Cancel refuses a submit in flight ("let recovery settle it first") and gives back the
    lease it claimed: recovery can settle the submit at once, no `lease_taken_over` names the
    canceler, and the refusal does not count towards the poison limit (a backend retrying
    cancel would otherwise walk the checkout into `failed` with the order at Violet)."""
    first, _ = await submit_applied_but_answer_lost(orch, sandbox_control)
    await run_sql(  # the worker that sent the submit died; its lease has expired
        database_url,
        "UPDATE checkouts SET lease_owner = 'dead-worker', "
        "lease_expires_at = now() - interval '1 s', next_attempt_at = now() - interval '1 s' "
        "WHERE id = %(id)s",
        {"id": first.id},
    )
    before = await orch.repo.get(first.id)
    assert before is not None
    with pytest.raises(IllegalTransition):
        await orch.cancel(first.id)
    after = await orch.repo.get(first.id)
    assert after is not None
    assert after.lease_owner != orch.worker_id, (
        f"the refused cancel kept the lease until {after.lease_expires_at}"
    )
    assert after.recoveries == before.recoveries, "a refused cancel counted as a crash recovery"


async def test_provide_payment_racing_a_cancel_does_not_reopen_the_canceled_checkout(
    settings: Settings,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """provide_payment reads the row, then claims it; a cancel landing in between makes the row
    terminal, and the claim hands back a terminal row without a lease. provide_payment must not
    drive it: no intent write (pending_step, in_flight, lease, finished_at cleared, a
    step_started event) and no card sent to Violet for a released cart."""
    async with (
        Orchestrator(settings, violet_transport=sandbox_transport) as owner,
        Orchestrator(settings, violet_transport=sandbox_transport) as other,
    ):
        registered = await owner.start(checkout_request(skus=DIGITAL, payment=VISA), run=False)
        # Driven by a process that never had the card: it parks in awaiting_payment.
        waiting = await other.run(registered.id)
        assert waiting.state == "awaiting_payment"
        payments_before = (await sandbox_control.stats())["calls_by_op"].get("payment", 0)

        real_claim = owner.repo.claim

        async def claim_after_a_concurrent_cancel(checkout_id: Any, **kwargs: Any) -> Any:
            await other.cancel(checkout_id)  # lands between provide_payment's read and claim
            return await real_claim(checkout_id, **kwargs)

        monkeypatch.setattr(owner.repo, "claim", claim_after_a_concurrent_cancel)
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do; what is left matters
            await owner.provide_payment(registered.id, dict(VISA))

        row = await owner.repo.get(registered.id)
        assert row is not None
        events = await owner.history(registered.id)
        kinds = [e.kind for e in events]
        after_cancel = kinds[kinds.index("canceled") + 1 :]
        payments_after = (await sandbox_control.stats())["calls_by_op"].get("payment", 0)
    assert row.state == "canceled"
    problems = {
        "re-opened (pending_step, in_flight, lease_owner)": (
            row.pending_step,
            row.in_flight,
            row.lease_owner,
        ),
        "finished_at": row.finished_at,
        "events after canceled": after_cancel,
        "payment calls sent to Violet after the cancel": payments_after - payments_before,
    }
    assert (row.pending_step, row.in_flight, row.lease_owner) == (None, False, None), problems
    assert row.finished_at is not None, problems
    assert "step_started" not in after_cancel, problems
    assert payments_after == payments_before, problems
