"""Read-backs fill the gaps webhooks leave, and `verify` records what it reads.

The sandbox sends its webhooks over real HTTP to a `webhooks serve` process; one it drops never
arrives, and the read-back (within its call budget) records what Violet shows instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchestrator.api import Orchestrator
from orchestrator.checkout import Checkout
from orchestrator.readback import read_back
from orchestrator.recovery import RecoveryJob
from orchestrator.sandbox import SANDBOX_CREDENTIALS, SandboxControl
from orchestrator.store import bags
from orchestrator.verify import verify
from tests.fixtures.orchestrator import checkout_request, make_settings
from tests.fixtures.webhooks import receiver_env, served_receiver


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    async with bags.pool(database_url) as opened:
        yield opened


async def bag_rows(pool: Any, checkout: Checkout) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        return await bags.bag_rows(conn, checkout.id)


async def calls_to_orders(control: SandboxControl) -> int:
    return len(await control.calls("get_order"))


async def test_a_dropped_webhook_is_filled_by_the_read_back(
    database_url: str, orch: Orchestrator, sandbox_control: SandboxControl, pool: Any
) -> None:
    env = receiver_env(database_url)
    env["VIOLET_WEBHOOK_SECRETS"] = str(SANDBOX_CREDENTIALS["app_secret"])
    checkout = await orch.start(checkout_request())
    assert checkout.violet_order_id is not None
    bag_id = checkout.bags[0]["bag_id"]
    with served_receiver(env) as receiver:
        await sandbox_control.register_webhook(receiver.url)
        await sandbox_control.move_bag(checkout.violet_order_id, bag_id, "ship")
        await asyncio.sleep(0.003)
        await sandbox_control.add_webhook_fault("drop", count=1)
        await sandbox_control.move_bag(checkout.violet_order_id, bag_id, "complete")
        for _ in range(500):
            events = await sandbox_control.webhook_events(order_id=checkout.violet_order_id)
            if [e["status"] for e in events] == ["SUCCEEDED", "DROPPED"]:
                break
            await asyncio.sleep(0.01)
    assert [e["status"] for e in events] == ["SUCCEEDED", "DROPPED"]
    await RecoveryJob(orch.worker).run("until-idle")
    [row] = await bag_rows(pool, checkout)
    assert (row["status"], row["fulfillment_status"]) == ("ACCEPTED", "SHIPPED")  # lost: complete

    fresh = await read_back(orch.worker, pool, older_than=3600, budget=10)
    assert (fresh.stale, fresh.read) == (0, 0)  # heard from a moment ago: not read
    report = await read_back(orch.worker, pool, older_than=0, budget=10)
    assert (report.stale, report.read, report.changed) == (1, 1, 1)
    [row] = await bag_rows(pool, checkout)
    assert (row["status"], row["last_event_id"]) == ("COMPLETED", "read_back")
    assert (await orch.get(checkout.id)).violet_status == "COMPLETED"
    [event] = [e for e in await orch.history(checkout.id) if e.kind == "bag_read_back"]
    assert event.detail is not None and event.detail["via"] == "readback"
    assert event.detail["bags"][0]["from"] == "ACCEPTED"


async def test_the_read_back_stays_within_its_budget_stalest_first(
    orch: Orchestrator, sandbox_control: SandboxControl, pool: Any
) -> None:
    first = await orch.start(checkout_request())
    second = await orch.start(checkout_request())
    before = await calls_to_orders(sandbox_control)

    one = await read_back(orch.worker, pool, older_than=0, budget=1)
    assert (one.stale, one.read) == (1, 1)
    assert await calls_to_orders(sandbox_control) == before + 1
    assert [len(await bag_rows(pool, c)) for c in (first, second)] == [1, 0]  # stalest first

    # What was just read counts as news: the next run reads the other order first.
    two = await read_back(orch.worker, pool, older_than=0, budget=1)
    assert two.read == 1 and len(await bag_rows(pool, second)) == 1
    none = await read_back(orch.worker, pool, older_than=0, budget=0)
    assert none.read == 0 and await calls_to_orders(sandbox_control) == before + 2


async def test_orders_whose_bags_are_all_final_are_not_read_back(
    orch: Orchestrator, sandbox_control: SandboxControl, pool: Any
) -> None:
    checkout = await orch.start(checkout_request())
    assert checkout.violet_order_id is not None
    await sandbox_control.move_bag(checkout.violet_order_id, checkout.bags[0]["bag_id"], "cancel")
    assert (await read_back(orch.worker, pool, older_than=0, budget=5)).changed == 1
    assert [r["status"] for r in await bag_rows(pool, checkout)] == ["CANCELED"]
    again = await read_back(orch.worker, pool, older_than=0, budget=5)
    assert (again.stale, again.read) == (0, 0)


async def test_verify_records_an_order_whose_every_bag_violet_rejected(
    database_url: str, sandbox_transport: httpx.AsyncBaseTransport, pool: Any
) -> None:
    # Violet takes the submit but its merchants decide later: recorded submitted as last seen.
    settings = make_settings(database_url, "http://sandbox/v1", submit_outcome_wait=0)
    async with (
        Orchestrator(settings, violet_transport=sandbox_transport) as orch,
        SandboxControl(transport=sandbox_transport) as control,
    ):
        await control.configure(processing_ms=600_000)
        checkout = await orch.start(checkout_request())
        assert (checkout.state, checkout.violet_status) == ("submitted", "PROCESSING")
        assert checkout.violet_order_id is not None
        for bag in checkout.bags:
            await control.move_bag(checkout.violet_order_id, bag["bag_id"], "reject")
        violet = await orch.client.get_order(checkout.violet_order_id)
        assert {b.status for b in violet.bags} == {"REJECTED"}

        report = await verify(orch.worker)
        assert report.recorded == 1 and report.drift == 1  # drift against the old record
        recorded = await orch.get(checkout.id)
        assert recorded.violet_status == violet.status
        rows = await bag_rows(pool, checkout)
        assert {r["bag_id"]: r["status"] for r in rows} == {b.id: b.status for b in violet.bags}
        assert [e.detail["via"] for e in await orch.history(checkout.id)  # type: ignore[index]
                if e.kind == "bag_read_back"] == ["verify"]  # fmt: skip

        again = await verify(orch.worker)
        assert again.recorded == 0  # nothing new: nothing written
