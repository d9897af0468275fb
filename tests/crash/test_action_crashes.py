"""A process killed (SIGKILL) in the middle of a bag's cancel: right after its intent committed,
and right after its request left. Recovery never sends the cancel again (the sandbox counts the
calls) and settles the action by reading the order: applied -> succeeded, not -> failed."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator.api import Orchestrator
from orchestrator.checkout import Checkout
from orchestrator.config import load_settings
from orchestrator.engine.actions import (
    CRASH_AFTER_INTENT,
    CRASH_AFTER_SEND,
    NOT_APPLIED,
    reconcile_actions,
)
from orchestrator.store.actions import BagAction
from tests.crash.conftest import LEASE_SECONDS, log_path
from tests.crash.procs import spawn
from tests.fixtures.orchestrator import TOKEN, checkout_request, make_settings
from tests.fixtures.sandbox import HttpSandbox

SETTLE_S = 0.3


def cancel_in_child(
    ref: str, bag_id: int, *, env: Mapping[str, str], log_path: str | None = None
) -> None:
    """`Orchestrator.cancel_bag` in a child process that dies at its armed crash point."""
    os.environ.update(env)
    if log_path is not None:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 2)
        os.close(fd)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True)

    async def main() -> None:
        async with Orchestrator(load_settings()) as orch:
            await orch.cancel_bag(ref, bag_id, actor="support:crash")

    asyncio.run(main())
    sys.exit(0)


@pytest.fixture
async def observer(database_url: str, http_sandbox: HttpSandbox) -> AsyncIterator[Orchestrator]:
    settings = make_settings(
        database_url,
        http_sandbox.base_url,
        action_settle_seconds=SETTLE_S,
        lease_seconds=LEASE_SECONDS,
    )
    async with Orchestrator(settings) as orch:
        yield orch


async def _crash_during_cancel(
    observer: Orchestrator, crash_env: dict[str, str], tmp_path: Path, point: str
) -> tuple[Checkout, int]:
    checkout = await observer.start(checkout_request(payment=TOKEN))
    assert checkout.state == "submitted"
    bag_id = int(checkout.bags[0]["bag_id"])
    env = {**crash_env, "ORCHESTRATOR_CRASH_AT": point}
    child = spawn(cancel_in_child, log_path(tmp_path, point), str(checkout.id), bag_id, env=env)
    assert child.wait() == -signal.SIGKILL, child.log()
    return checkout, bag_id


async def _settle_by_recovery(observer: Orchestrator, checkout: Checkout) -> BagAction:
    """Run the recovery's action pass until it settles the one action (or time is up)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if await reconcile_actions(observer.worker, budget=10):
            break
        await asyncio.sleep(0.2)
    [action] = await observer.bag_actions(checkout.id)
    assert not action.is_open, action
    return action


async def _cancels(http_sandbox: HttpSandbox) -> dict[str, Any]:
    stats: dict[str, Any] = (await http_sandbox.control.stats())["bag_cancels"]
    return stats


async def test_killed_after_the_intent_the_cancel_is_never_sent_and_settles_failed(
    observer: Orchestrator, http_sandbox: HttpSandbox, crash_env: dict[str, str], tmp_path: Path
) -> None:
    checkout, _ = await _crash_during_cancel(observer, crash_env, tmp_path, CRASH_AFTER_INTENT)
    [left] = await observer.bag_actions(checkout.id)
    assert (left.state, left.actor) == ("requested", "support:crash")
    assert await _cancels(http_sandbox) == {}

    action = await _settle_by_recovery(observer, checkout)

    assert action.state == "failed" and action.sent_at is None
    assert action.error is not None and NOT_APPLIED in action.error["message"]
    assert await _cancels(http_sandbox) == {}  # recovery read; it never sent
    order = await observer.client.get_order(checkout.violet_order_id or 0)
    assert order.bags[0].status == "ACCEPTED"
    kinds = [e.kind for e in await observer.history(checkout.id)]
    assert kinds.count("bag_action_requested") == 1
    assert "lease_taken_over" in kinds and kinds[-1] == "bag_action_settled"
    after = await observer.get(checkout.id)
    assert after.lease_owner is None and after.state == "submitted"


async def test_killed_after_the_request_left_recovery_reads_it_applied_and_sends_nothing(
    observer: Orchestrator, http_sandbox: HttpSandbox, crash_env: dict[str, str], tmp_path: Path
) -> None:
    checkout, bag_id = await _crash_during_cancel(observer, crash_env, tmp_path, CRASH_AFTER_SEND)
    [left] = await observer.bag_actions(checkout.id)
    assert left.state == "requested"  # the answer was never recorded
    assert await _cancels(http_sandbox) == {str(bag_id): 1}
    # While its lease and send bound may still hold, recovery leaves it alone.
    assert await reconcile_actions(observer.worker, budget=10) == 0

    action = await _settle_by_recovery(observer, checkout)

    assert action.state == "succeeded"
    assert await _cancels(http_sandbox) == {str(bag_id): 1}
    settled = [e for e in await observer.history(checkout.id) if e.kind == "bag_action_settled"]
    assert [e.detail["how"] for e in settled] == ["read_back"]
    assert settled[0].detail["actor"] == "support:crash"
