"""Randomized crashes and faults: a seeded schedule (printed; ORCHESTRATOR_CRASH_SEED overrides)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from orchestrator.api import Orchestrator
from orchestrator.engine.crashpoints import POINTS
from orchestrator.engine.steps import STEPS
from tests.crash import procs, worker
from tests.crash.conftest import assert_exactly_once
from tests.fixtures.sandbox import HttpSandbox

pytestmark = pytest.mark.crash

ROUNDS = 3
PER_ROUND = 4
_FAULT_OPS = ("customer", "set_shipping", "payment", "price", "get_cart", "search_orders")
_DROP_OPS = ("create_cart", "customer", "payment", "price", "submit")


async def test_random_crash_points_and_fault_schedules(
    crash_env: dict[str, str],
    http_sandbox: HttpSandbox,
    observer: Orchestrator,
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("ORCHESTRATOR_CRASH_SEED") or random.randrange(1_000_000))
    print(f"crash seed {seed} (rerun with ORCHESTRATOR_CRASH_SEED={seed})")
    rng = random.Random(seed)
    control = http_sandbox.control
    expected: dict[str, str] = {}
    for round_no in range(ROUNDS):
        point = f"{rng.choice(POINTS)}:{rng.choice(list(STEPS))}@{rng.randint(1, PER_ROUND)}"
        schedule = [
            ("503", rng.choice(_FAULT_OPS)),
            ("429", rng.choice(_FAULT_OPS)),
            ("drop", rng.choice(_DROP_OPS)),
        ]
        await control.add_fault(schedule[0][1], "error", probability=0.2, status=503)
        await control.add_fault(schedule[1][1], "rate_limit", count=1, retry_after=0.2)
        await control.add_fault(schedule[2][1], "drop_after_apply", count=1)
        where = f"seed {seed} round {round_no}: crash at {point}, faults {schedule}"
        requests = [
            worker.request(f"r{round_no}-{i}", physical=rng.random() < 0.5)
            for i in range(PER_ROUND)
        ]
        child = procs.start_worker(
            crash_env, tmp_path / f"worker-{round_no}.log", requests, crash_at=point
        )
        code = child.wait()
        assert code in (-9, 0, 3), f"{where}: exit {code}\n{child.log()}"
        recoveries = [
            procs.start_recovery(crash_env, tmp_path / f"recovery-{round_no}-{i}.log")
            for i in range(rng.randint(1, 2))
        ]
        for recovery in recoveries:
            assert recovery.wait() == 0, f"{where}\n{recovery.log()}"
        await control.clear_faults()
        for r in requests:  # a worker killed early may not have registered all of them
            if await observer.repo.get(r["app_order_id"]) is not None:
                expected[r["app_order_id"]] = "submitted"
        try:
            await assert_exactly_once(observer, http_sandbox, expected)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from exc
