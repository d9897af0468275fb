"""The reconciler waits for the send bound of the process that sent the request, stored with
the step's intent, not only for its own settle window: workers and the recovery job may run
with different Violet timeouts."""

from __future__ import annotations

import asyncio

from orchestrator.api import Orchestrator
from tests.fixtures.orchestrator import DIGITAL, TOKEN, checkout_request, make_settings
from tests.fixtures.sandbox import HttpSandbox


async def test_a_reconciler_with_shorter_timeouts_waits_for_the_senders_bound(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    # The sender may send until 2 x 2.5 s after the step's start; the reconciler's own window
    # is 2 x 0.5 + 0.3 s.
    sender = make_settings(database_url, http_sandbox.base_url, read_timeout=1.0, total_timeout=2.5)
    reconciler = make_settings(
        database_url, http_sandbox.base_url, read_timeout=0.5, total_timeout=0.5
    )
    control = http_sandbox.control
    async with Orchestrator(sender) as orch:
        # Violet applies the submit after 2.5 s; the sender gave up after 1.0 s.
        await control.add_fault("submit", "latency", count=1, latency_ms=2500)
        first = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
    assert (first.pending_step, first.in_flight) == ("submit", True), first.last_error
    async with Orchestrator(reconciler) as recovery:
        done = await recovery.run(first.id, retry_wait=15)
    await asyncio.sleep(1.0)  # let a second submit, if any, land at the sandbox
    assert done.state == "submitted", done.last_error
    stats = await control.stats()
    assert stats["calls_by_op"]["submit"] == 1, "submitted again while the first still ran"
    assert stats["duplicate_submits"] == {}
