"""Workers and recovery processes killed (or frozen) at chosen instants of real traffic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orchestrator.api import Orchestrator
from tests.crash import procs, worker
from tests.crash.conftest import LEASE_SECONDS, assert_exactly_once, summary_of
from tests.fixtures.polling import eventually
from tests.fixtures.sandbox import HttpSandbox

pytestmark = pytest.mark.crash

N = 20


async def _ops(sandbox: HttpSandbox, op: str) -> int:
    stats = await sandbox.control.stats()
    return int(stats["calls_by_op"].get(op, 0))


async def _rows(orch: Orchestrator) -> int:
    async with orch.engine.connect() as conn:
        return int((await conn.exec_driver_sql("SELECT count(*) FROM checkouts")).scalar_one())


def _recover(env: dict[str, str], tmp_path: Path, copies: int, tag: str) -> None:
    recoveries = [
        procs.start_recovery(env, tmp_path / f"recovery-{tag}-{i}.log") for i in range(copies)
    ]
    for child in recoveries:
        assert child.wait() == 0, child.log()
    assert summary_of(recoveries[0].log())["still_due"] == 0


@pytest.mark.parametrize(
    ("instant", "copies"),
    [
        ("before_first_call", 1),
        ("mid_flow", 1),
        ("mid_flow", 3),
        ("during_submit", 1),
        ("during_submit", 3),
    ],
)
async def test_worker_killed_at_an_instant_then_recovered_by_concurrent_processes(
    instant: str,
    copies: int,
    crash_env: dict[str, str],
    http_sandbox: HttpSandbox,
    observer: Orchestrator,
    tmp_path: Path,
) -> None:
    control = http_sandbox.control
    await control.configure(latency_ms=20)
    if instant == "before_first_call":
        await control.add_fault("login", "latency", count=1, latency_ms=5000)
    if instant == "during_submit":  # applied at Violet, answer not yet arrived
        await control.add_fault("submit", "delay_after_apply", count=N, latency_ms=4000)
    requests = [worker.request(f"{instant}-{copies}-{i}") for i in range(N)]
    child = procs.start_worker(crash_env, tmp_path / "worker.log", requests)
    if instant == "before_first_call":
        await eventually(lambda: _rows_equal(observer, N), "every checkout registered")
    elif instant == "mid_flow":
        await eventually(lambda: _at_least(http_sandbox, "customer", N // 2), "mid flow")
    else:
        await eventually(lambda: _at_least(http_sandbox, "submit", N // 2), "submits applied")
    child.kill()
    assert child.wait() == -9
    if instant == "before_first_call":
        assert await _ops(http_sandbox, "create_cart") == 0
    await control.clear_faults()

    _recover(crash_env, tmp_path, copies, instant)
    expected = {r["app_order_id"]: "submitted" for r in requests}
    await assert_exactly_once(observer, http_sandbox, expected)


async def _rows_equal(orch: Orchestrator, n: int) -> bool:
    return await _rows(orch) >= n


async def _at_least(sandbox: HttpSandbox, op: str, n: int) -> bool:
    return await _ops(sandbox, op) >= n


async def test_a_recovery_process_killed_mid_batch_leaves_nothing_stuck(
    crash_env: dict[str, str],
    http_sandbox: HttpSandbox,
    observer: Orchestrator,
    tmp_path: Path,
) -> None:
    await http_sandbox.control.configure(latency_ms=50)
    ids = []
    for i in range(12):
        checkout = await observer.start(worker.request(f"batch-{i}"), run=False)
        ids.append(checkout.app_order_id)
    first = procs.start_recovery(
        crash_env, tmp_path / "first.log", "--until-idle", "--concurrency", "4"
    )
    await eventually(lambda: _at_least(http_sandbox, "submit", 2), "some submits")
    first.kill()
    assert first.wait() == -9
    _recover(crash_env, tmp_path, 1, "second")
    await assert_exactly_once(observer, http_sandbox, dict.fromkeys(ids, "submitted"))
    takeovers = [e for a in ids for e in await observer.history(a) if e.kind == "lease_taken_over"]
    assert takeovers, "the killed recovery process held leases that the next one took over"


async def test_a_frozen_worker_cannot_overwrite_the_one_that_took_over(
    crash_env: dict[str, str],
    http_sandbox: HttpSandbox,
    observer: Orchestrator,
    tmp_path: Path,
) -> None:
    control = http_sandbox.control
    await control.add_fault("submit", "delay_after_apply", count=1, latency_ms=800)
    request = worker.request("frozen-1")
    child = procs.start_worker(crash_env, tmp_path / "frozen.log", [request])
    await eventually(lambda: _at_least(http_sandbox, "submit", 1), "the submit sent")
    child.pause()  # SIGSTOP: a GC pause or stalled VM, past its lease
    try:
        await asyncio.sleep(LEASE_SECONDS + 0.3)
        _recover(crash_env, tmp_path, 1, "takeover")
        assert (await observer.get("frozen-1")).state == "submitted"
    finally:
        child.resume()
    assert child.wait() == 3, child.log()  # its late write raised LeaseLost
    assert "lease lost, late write refused" in child.log()
    checkouts = await assert_exactly_once(observer, http_sandbox, {"frozen-1": "submitted"})
    kinds = [e.kind for e in await observer.history(checkouts[0].id)]
    # The checkout path's trail ends with its last transition; `verify` (in assert_exactly_once)
    # then records the bags it read back, after it.
    checkout_path = [k for k in kinds if k != "bag_read_back"]
    assert checkout_path.count("transition") == 6 and checkout_path[-1] == "transition"
    assert kinds[len(checkout_path) :] == ["bag_read_back"] * (len(kinds) - len(checkout_path))


async def test_submit_answer_lost_is_reconciled_not_resubmitted(
    crash_env: dict[str, str],
    http_sandbox: HttpSandbox,
    observer: Orchestrator,
    tmp_path: Path,
) -> None:
    await http_sandbox.control.add_fault("submit", "drop_after_apply", count=1)
    child = procs.start_worker(crash_env, tmp_path / "drop.log", [worker.request("dropped-1")])
    assert child.wait() == 0, child.log()
    waiting = await observer.get("dropped-1")
    assert waiting.state == "priced" and waiting.in_flight and waiting.pending_step == "submit"
    _recover(crash_env, tmp_path, 1, "drop")
    await assert_exactly_once(observer, http_sandbox, {"dropped-1": "submitted"}, recovered=[])
    events = await observer.history("dropped-1")
    reconciled = [e for e in events if e.kind == "reconciled"]
    assert len(reconciled) == 1 and reconciled[0].step == "submit"
    assert reconciled[0].detail is not None and reconciled[0].detail["decision"] == "advance"
    submits = [e for e in events if e.kind == "violet_call" and e.step == "submit"]
    assert len(submits) == 1
