"""The host's view of the feed: each checkout that finishes or starts waiting makes exactly one
change, written by the step write itself (alone or grouped, and across a kill -9), and `follow`
is woken by the NOTIFY of the commit rather than by its poll."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from orchestrator import SyncOrchestrator
from orchestrator.api import Orchestrator
from orchestrator.checkout import Checkout
from orchestrator.config import Settings
from orchestrator.errors import InvalidRequest
from orchestrator.states import SUBMIT
from orchestrator.store.changes import CHANNEL, START, Change
from tests.crash import procs, worker
from tests.crash.conftest import crash_env, observer  # noqa: F401 (fixtures)
from tests.fixtures.db import libpq_url
from tests.fixtures.orchestrator import (
    DECLINED,
    DIGITAL,
    TOKEN,
    VISA,
    checkout_request,
    make_settings,
)
from tests.fixtures.sandbox import HttpSandbox


async def settled(orch: Orchestrator, count: int, after: str = START) -> list[Change]:
    """The changes after `after` once there are `count` (at most 30 s): a committed change
    shows once every older transaction on the server has ended (other tests' included)."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        found = await orch.changes(after, limit=1000)
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.02)


def of(found: list[Change], checkout: Checkout) -> list[Change]:
    return [change for change in found if change.checkout_id == checkout.id]


def assert_finished(change: Change, checkout: Checkout) -> None:
    assert change.kind == "checkout_finished"
    assert change.app_order_id == checkout.app_order_id
    assert change.detail is not None
    assert change.detail["state"] == checkout.state
    assert change.detail["violet_order_id"] == checkout.violet_order_id
    assert change.detail["currency"] == checkout.currency
    assert change.detail["totals"] == {
        "sub_total": checkout.sub_total,
        "shipping_total": checkout.shipping_total,
        "tax_total": checkout.tax_total,
        "discount_total": checkout.discount_total,
        "total": checkout.total,
    }


async def test_a_submitted_checkout_makes_exactly_one_change(orch: Orchestrator) -> None:
    checkout = await orch.start(checkout_request(payment=TOKEN))
    assert checkout.state == "submitted"
    (change,) = of(await settled(orch, 1), checkout)
    assert_finished(change, checkout)
    assert checkout.total is not None and checkout.total > 0
    assert "error_type" not in (change.detail or {})
    assert change.cursor.endswith(f":{change.id}")
    assert await orch.changes(change.cursor) == []


async def test_a_failed_checkout_makes_one_change_with_its_error_type(orch: Orchestrator) -> None:
    checkout = await orch.start(checkout_request(payment=DECLINED))
    assert checkout.state == "failed"
    (change,) = of(await settled(orch, 1), checkout)
    assert_finished(change, checkout)
    assert change.detail is not None and change.detail["error_type"] == "card_declined"


async def test_a_parked_checkout_makes_one_waiting_change_then_one_finished(
    settings: Settings, sandbox_transport: httpx.AsyncBaseTransport
) -> None:
    async with (
        Orchestrator(settings, violet_transport=sandbox_transport) as holder,
        Orchestrator(settings, violet_transport=sandbox_transport) as other,
    ):
        registered = await holder.start(checkout_request(skus=DIGITAL), run=False)
        parked = await other.run(registered.id)  # `other` never had the card: it parks
        assert parked.state == "awaiting_payment" and parked.waiting_reason
        (waiting,) = await settled(other, 1)
        assert (waiting.kind, waiting.checkout_id) == ("checkout_waiting", parked.id)
        assert waiting.detail == {
            "state": "awaiting_payment",
            "waiting_reason": parked.waiting_reason,
        }

        submitted = await other.provide_payment(parked.id, VISA)
        assert submitted.state == "submitted"
        (finished,) = await settled(other, 1, after=waiting.cursor)
        assert_finished(finished, submitted)
        assert len(await other.changes()) == 2


async def test_a_checkout_run_notifies_followers_once_not_per_step_write(
    orch: Orchestrator, database_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as listener:
        await listener.execute(f"LISTEN {CHANNEL}")
        checkout = await orch.start(checkout_request(payment=TOKEN))
        assert checkout.state == "submitted"
        steps = len([e for e in await orch.history(checkout.id) if e.kind == "step_started"])
        assert steps >= 5  # several step writes, one change
        heard = [n.channel async for n in listener.notifies(timeout=1.0)]
    assert heard == [CHANNEL]


async def test_grouped_step_writes_append_each_change_once(orch: Orchestrator) -> None:
    group = orch.repo.group_commit
    assert group is not None
    checkouts = await asyncio.gather(
        *(orch.start(checkout_request(payment=TOKEN)) for _ in range(12))
    )
    assert {c.state for c in checkouts} == {"submitted"}
    assert group.writes > group.statements  # some step writes did share a statement
    found = await settled(orch, len(checkouts))
    assert sorted(str(c.checkout_id) for c in found) == sorted(str(c.id) for c in checkouts)
    for checkout in checkouts:
        (change,) = of(found, checkout)
        assert_finished(change, checkout)
    assert len({c.id for c in found}) == len(found)


async def test_a_bad_cursor_or_limit_is_refused_naming_it(orch: Orchestrator) -> None:
    with pytest.raises(InvalidRequest, match="after: not a changes cursor: 'soon'"):
        await orch.changes("soon")
    for limit in (0, 1001):
        with pytest.raises(InvalidRequest, match="limit"):
            await orch.changes(limit=limit)
    with pytest.raises(InvalidRequest, match="after"):
        await anext(orch.follow("1:2:3"))


async def test_follow_is_woken_by_the_commit_not_by_its_poll(orch: Orchestrator) -> None:
    first = await orch.start(checkout_request(payment=TOKEN))
    await settled(orch, 1)
    came: asyncio.Queue[Change] = asyncio.Queue()

    async def follow() -> None:
        # A poll every 10 minutes: a change seen within the test's timeout came by NOTIFY.
        async for change in orch.follow(START, poll_seconds=600):
            await came.put(change)

    follower = asyncio.create_task(follow())
    try:
        seen = await asyncio.wait_for(came.get(), timeout=30)  # the first read found it
        assert seen.checkout_id == first.id
        await asyncio.sleep(4)  # past the quick re-reads after a change (3.15 s in all)
        second = await orch.start(checkout_request(payment=TOKEN))
        woken = await asyncio.wait_for(came.get(), timeout=20)
        assert woken.checkout_id == second.id
        assert woken.id != seen.id
    finally:
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower


@pytest.mark.crash
@pytest.mark.parametrize("point", ["after_call", "after_outcome_commit"])
async def test_a_worker_killed_around_the_terminal_write_leaves_one_finished_change(
    point: str,
    crash_env: dict[str, str],  # noqa: F811
    http_sandbox: HttpSandbox,
    observer: Orchestrator,  # noqa: F811
    tmp_path: Path,
) -> None:
    app_order_id = f"feed-{uuid.uuid4().hex[:8]}"
    crash_at = f"{point}:{SUBMIT}"
    child = procs.start_worker(
        crash_env, tmp_path / "worker.log", [worker.request(app_order_id)], crash_at=crash_at
    )
    assert child.wait() == -9, child.log()
    assert f"crash point {crash_at} reached" in child.log()
    recovery = procs.start_recovery(crash_env, tmp_path / "recovery.log")
    assert recovery.wait() == 0, recovery.log()

    checkout = await observer.get(app_order_id)
    assert checkout.state == "submitted"
    await settled(observer, 1)
    await asyncio.sleep(0.5)  # a second change, appended by recovery, would show by now
    found = of(await observer.changes(limit=1000), checkout)
    assert len(found) == 1, found
    assert_finished(found[0], checkout)


def test_the_sync_facade_reads_and_follows_the_feed(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    settings = make_settings(database_url, http_sandbox.base_url)
    with SyncOrchestrator(settings) as orch:
        first = orch.start(checkout_request(payment=TOKEN))
        second = orch.start(checkout_request(payment=DECLINED))
        changes = orch.follow(poll_seconds=0.2)
        came = [next(changes), next(changes)]  # the poll delivers them, held back or not
        changes.close()  # stops the follower (its LISTEN connection closed)
        assert [c.checkout_id for c in came] == [first.id, second.id]
        assert orch.changes() == came
        assert orch.changes(came[0].cursor, limit=1) == [came[1]]
