"""A checkout its workers keep dying on (more crash recoveries than max_recoveries) is parked
where no worker picks it up again, but a submit in flight is read at Violet first: an order
Violet holds is never recorded as failed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from orchestrator.api import Orchestrator
from orchestrator.recovery import RecoveryJob
from orchestrator.sandbox import SandboxControl
from tests.fixtures.db import run_sql
from tests.fixtures.orchestrator import (
    DIGITAL,
    TOKEN,
    checkout_request,
    make_settings,
    submit_applied_but_answer_lost,
)


async def test_poison_does_not_record_failed_for_a_submit_violet_completed(
    orch: Orchestrator, sandbox_control: SandboxControl, database_url: str
) -> None:
    """A poisoned checkout with a submit in flight is reconciled before it is judged: here
    Violet COMPLETED (charged) the order, so the checkout must not end terminal `failed`."""
    first, _ = await submit_applied_but_answer_lost(orch, sandbox_control)
    await run_sql(
        database_url,
        "UPDATE checkouts SET lease_owner = 'dead-worker', "
        "lease_expires_at = now() - interval '1 s', next_attempt_at = now() - interval '1 s', "
        "recoveries = %(r)s WHERE id = %(id)s",
        {"r": orch.settings.max_recoveries, "id": first.id},
    )
    await RecoveryJob(orch.worker).run("until-idle")
    checkout = await orch.get(first.id)
    violet = await sandbox_control.cart(first.violet_order_id)
    assert violet["status"] == "COMPLETED"
    assert checkout.state != "failed", (
        f"Violet completed the order but it is recorded as failed: {checkout.last_error}"
    )


async def test_a_submit_whose_reconcile_keeps_killing_the_worker_is_still_parked(
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The poison guard ends a crash loop even when the worker dies in the submit's reconcile
    probe (here the GET-cart answer makes it raise, as a malformed cart or an OOM while parsing
    would): after max_recoveries the checkout is parked somewhere no worker picks it up again
    (a waiting state with a reason, or terminal), without claiming Violet's order away."""
    settings = make_settings(database_url, "http://sandbox/v1", max_recoveries=2)
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        await sandbox_control.add_fault("submit", "drop_after_apply", count=1)
        first = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        assert (first.state, first.pending_step, first.in_flight) == ("priced", "submit", True)

        async def dies_reading_the_cart(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError("worker dies while reading the cart")

        monkeypatch.setattr(orch.client, "get_cart", dies_reading_the_cart)
        for _ in range(settings.max_recoveries + 10):  # a round need not claim it every time
            current = await orch.repo.get(first.id)
            if current is not None and current.state == "failed":
                break
            await run_sql(  # the dead worker's lease has expired
                database_url,
                "UPDATE checkouts SET lease_expires_at = now() - interval '1 s', "
                "next_attempt_at = now() - interval '1 s' "
                "WHERE id = %(id)s AND lease_owner IS NOT NULL",
                {"id": first.id},
            )
            await RecoveryJob(orch.worker).run("once")
        row = await orch.repo.get(first.id)
    assert row is not None
    still_looping = row.state not in ("submitted", "failed", "canceled") and (
        row.pending_step is not None
    )
    assert not still_looping, (
        f"after {row.recoveries} crash recoveries (max {settings.max_recoveries}) the checkout is "
        f"still {row.state}/{row.pending_step}/in_flight={row.in_flight} and claimed again",
    )
