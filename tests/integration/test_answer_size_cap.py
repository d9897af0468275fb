"""A Violet answer larger than VIOLET_MAX_RESPONSE_BYTES is cut off, not read into memory: a
read's is retryable, a write's (it may have been applied) an outcome unknown to reconcile."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator.api import Orchestrator
from orchestrator.recovery import RecoveryJob
from orchestrator.sandbox import SandboxControl
from tests.fixtures.orchestrator import DIGITAL, TOKEN, checkout_request, make_settings
from tests.fixtures.polling import eventually
from tests.fixtures.sandbox import HttpSandbox

CAP = 1024 * 1024
HUGE = 64 * 1024 * 1024


@pytest.fixture
async def orch(database_url: str, http_sandbox: HttpSandbox) -> AsyncIterator[Orchestrator]:
    """Over real HTTP: an in-process transport would buffer the whole answer itself."""
    settings = make_settings(
        database_url, http_sandbox.base_url, violet_max_response_bytes=CAP, total_timeout=2.0
    )
    async with Orchestrator(settings) as orchestrator:
        yield orchestrator


async def _streamed(control: SandboxControl, op: str) -> dict[str, Any]:
    """The huge answer's call log entry, once the sandbox stopped streaming it."""
    found: list[dict[str, Any]] = []

    async def stream_over() -> bool:
        entries = [c for c in await control.calls(op=op) if c.get("fault") == "huge_answer"]
        found[:] = entries
        return bool(entries) and all(c.get("stream_done") for c in entries)

    await eventually(stream_over, f"the huge {op} answer's stream ended")
    assert len(found) == 1
    return found[0]


async def test_an_oversized_answer_to_a_read_is_cut_off_and_retried(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    control = http_sandbox.control
    await control.add_fault("price", "huge_answer", size_bytes=HUGE)
    checkout = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
    assert checkout.state == "submitted"  # the read was retried (inline) and answered normally
    prices = [e for e in await orch.history(checkout.id) if e.step == "price" and e.http_method]
    assert [(e.http_status, e.error_class) for e in prices] == [
        (200, "VioletRetryableError"),
        (200, None),
    ]
    entry = await _streamed(control, "price")
    assert entry["streamed_bytes"] < HUGE // 2, "the client hung up instead of reading it all"


async def test_an_oversized_answer_to_a_submit_is_an_outcome_unknown_then_reconciled(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    control = http_sandbox.control
    await control.add_fault("submit", "huge_answer", size_bytes=HUGE)
    first = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
    assert (first.state, first.pending_step, first.in_flight) == ("priced", "submit", True)
    assert first.last_error is not None
    assert first.last_error["class"] == "outcome_unknown"
    assert first.last_error["type"] == "response_too_large"
    entry = await _streamed(control, "submit")
    assert entry["streamed_bytes"] < HUGE // 2, entry

    summary = await RecoveryJob(orch.worker).run("until-idle")
    assert summary.submitted == 1
    done = await orch.get(first.id)
    assert done.state == "submitted"
    assert (await control.stats())["submits"] == {str(done.violet_order_id): 1}
