"""Exact crash points: a worker SIGKILLs itself at every gap of every step; recovery finishes it.

Per step, one worker per crash point (token payment) plus the card cases that step decides,
all killed at once; then one recovery process runs until idle and every invariant is checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.api import Orchestrator
from orchestrator.engine.crashpoints import POINTS
from orchestrator.engine.steps import STEPS
from orchestrator.states import APPLY_PAYMENT, CREATE_CART, PRICE, SUBMIT
from tests.crash import procs, worker
from tests.crash.conftest import assert_exactly_once, summary_of
from tests.fixtures.sandbox import HttpSandbox

pytestmark = pytest.mark.crash

_BEFORE_PAYMENT = (CREATE_CART, "apply_customer", "apply_shipping")


def _cases(step: str) -> list[tuple[str, str, str, str]]:
    """(app_order_id, crash point, payment, expected end state) for one step."""
    cases = [(f"{step}.{p}.token", f"{p}:{step}", "token", "submitted") for p in POINTS]
    if step in _BEFORE_PAYMENT:  # the card dies with the worker before Violet saw it
        point = "after_intent_commit" if step == CREATE_CART else "after_outcome_commit"
        cases.append((f"{step}.{point}.card", f"{point}:{step}", "card", "awaiting_payment"))
    elif step == APPLY_PAYMENT:
        cases.append(
            (f"{step}.before.card", f"after_intent_commit:{step}", "card", "awaiting_payment")
        )
        cases.append((f"{step}.after.card", f"after_call:{step}", "card", "submitted"))
    elif step in (PRICE, SUBMIT):  # Violet holds the card already
        cases.append((f"{step}.intent.card", f"after_intent_commit:{step}", "card", "submitted"))
    return cases


@pytest.mark.parametrize("step", list(STEPS))
async def test_worker_killed_at_each_crash_point_is_finished_by_recovery(
    step: str,
    crash_env: dict[str, str],
    http_sandbox: HttpSandbox,
    observer: Orchestrator,
    tmp_path: Path,
) -> None:
    cases = _cases(step)
    children = [
        procs.start_worker(
            crash_env,
            tmp_path / f"{app_order_id}.log",
            [worker.request(app_order_id, payment=payment)],
            crash_at=point,
        )
        for app_order_id, point, payment, _ in cases
    ]
    for child, (app_order_id, point, _, _) in zip(children, cases, strict=True):
        assert child.wait() == -9, f"{app_order_id} did not die at {point}:\n{child.log()}"
        assert f"crash point {point} reached" in child.log()

    recovery = procs.start_recovery(crash_env, tmp_path / "recovery.log")
    assert recovery.wait() == 0, recovery.log()
    summary = summary_of(recovery.log())
    assert summary["still_due"] == 0

    expected = {app_order_id: state for app_order_id, _, _, state in cases}
    recovered = [
        app_order_id
        for app_order_id, point, _, _ in cases
        if point != f"after_outcome_commit:{SUBMIT}"  # already terminal: nothing to recover
    ]
    checkouts = await assert_exactly_once(observer, http_sandbox, expected, recovered=recovered)
    for checkout in checkouts:
        if checkout.state == "awaiting_payment":
            assert checkout.waiting_reason is not None
            assert "provide_payment" in checkout.waiting_reason
