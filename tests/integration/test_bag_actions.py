"""A bag's cancel and refund after submit, over real HTTP to the sandbox and real PostgreSQL.

Each is sent at most once (the sandbox counts the calls), recorded with its actor, and settled
by what the bag shows: at once when a read right after the 202 shows it, or by the read that
recovery makes after the settle window, which turns a 202 that hid a failure into `failed`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator import BagAction, IllegalTransition, InvalidRequest
from orchestrator.api import Orchestrator
from orchestrator.checkout import Checkout
from orchestrator.engine.actions import reconcile_actions
from orchestrator.store.budgets import MerchantBudgets, merchant_key
from orchestrator.violet.models import Bag
from tests.fixtures.orchestrator import TOKEN, checkout_request, make_settings
from tests.fixtures.sandbox import HttpSandbox

SETTLE_S = 0.5


@pytest.fixture
async def orch(database_url: str, http_sandbox: HttpSandbox) -> AsyncIterator[Orchestrator]:
    settings = make_settings(database_url, http_sandbox.base_url, action_settle_seconds=SETTLE_S)
    async with Orchestrator(settings) as orchestrator:
        yield orchestrator


async def submitted(orch: Orchestrator) -> tuple[Checkout, int]:
    checkout = await orch.start(checkout_request(payment=TOKEN))
    assert checkout.state == "submitted", checkout.last_error
    return checkout, int(checkout.bags[0]["bag_id"])


async def rows(orch: Orchestrator, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with orch.engine.connect() as conn:
        result = await conn.exec_driver_sql(sql, params)
        return [dict(r) for r in result.mappings().all()]


async def events_of(orch: Orchestrator, checkout: Checkout, prefix: str) -> list[Any]:
    return [e for e in await orch.history(checkout.id) if e.kind.startswith(prefix)]


async def settled_changes(orch: Orchestrator, checkout: Checkout) -> list[dict[str, Any]]:
    return await rows(
        orch,
        "SELECT kind, detail FROM checkout_changes WHERE checkout_id = %(id)s "
        "AND kind = 'action_settled' ORDER BY id",
        id=checkout.id,
    )


async def bag_at_violet(orch: Orchestrator, checkout: Checkout, bag_id: int) -> Bag:
    """The bag as Violet shows it now (a read through the client, as a read-back makes it)."""
    assert checkout.violet_order_id is not None
    order = await orch.client.get_order(checkout.violet_order_id)
    return next(b for b in order.bags if b.id == bag_id)


async def test_a_cancel_is_sent_once_and_settles_when_the_bag_shows_it(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    checkout, bag_id = await submitted(orch)

    action = await orch.cancel_bag(checkout.app_order_id, bag_id, actor="support:ana", reason="x")

    assert isinstance(action, BagAction)
    assert (action.kind, action.state, action.actor) == ("cancel", "succeeded", "support:ana")
    assert action.sent_at is not None and action.settled_at is not None and action.error is None
    assert (await bag_at_violet(orch, checkout, bag_id)).status == "CANCELED"
    stats = await http_sandbox.control.stats()
    assert stats["bag_cancels"] == {str(bag_id): 1}
    kinds = [e.kind for e in await events_of(orch, checkout, "bag_action")]
    assert kinds == ["bag_action_requested", "bag_action_sent", "bag_action_settled"]
    requested = (await events_of(orch, checkout, "bag_action_requested"))[0]
    assert requested.detail["actor"] == "support:ana"
    assert requested.detail["action_id"] == str(action.id)
    changes = await settled_changes(orch, checkout)
    assert [c["detail"]["state"] for c in changes] == ["succeeded"]
    assert changes[0]["detail"]["action_id"] == str(action.id)
    # The checkout's lease is given back, its frozen columns untouched.
    after = await orch.get(checkout.id)
    assert after.lease_owner is None and after.state == "submitted"
    assert await orch.bag_actions(checkout.id) == [action]


async def test_a_partial_then_full_refund_each_sent_once(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    checkout, bag_id = await submitted(orch)
    total = int(checkout.bags[0]["total"])

    part = await orch.refund_bag(checkout.id, bag_id, actor="ops:bo", amount=100, reason="dent")
    assert (part.kind, part.state, part.amount) == ("refund", "succeeded", 100)
    assert (await bag_at_violet(orch, checkout, bag_id)).status == "PARTIALLY_REFUNDED"

    rest = await orch.refund_bag(checkout.id, bag_id, actor="ops:bo")
    assert rest.state == "succeeded"
    bag = await bag_at_violet(orch, checkout, bag_id)
    assert bag.status == "REFUNDED"
    refunded = sum(t.amount or 0 for t in bag.transactions if t.type == "REFUND")
    assert refunded == total
    assert (await http_sandbox.control.stats())["bag_refunds"] == {str(bag_id): 2}
    states = [c["detail"]["state"] for c in await settled_changes(orch, checkout)]
    assert states == ["succeeded", "succeeded"]


async def test_a_refund_over_the_bag_total_is_refused_naming_amount_and_nothing_is_written(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    checkout, bag_id = await submitted(orch)
    before = await orch.history(checkout.id)
    total = int(checkout.bags[0]["total"])

    with pytest.raises(InvalidRequest) as refused:
        await orch.refund_bag(checkout.id, bag_id, actor="ops", amount=total + 1)

    assert [name for name, _ in refused.value.fields] == ["amount"]
    with pytest.raises(InvalidRequest, match="bag_id"):
        await orch.refund_bag(checkout.id, bag_id + 999, actor="ops", amount=1)
    with pytest.raises(InvalidRequest, match="actor"):
        await orch.cancel_bag(checkout.id, bag_id, actor=" ")
    with pytest.raises(InvalidRequest, match="skus"):
        await orch.refund_bag(checkout.id, bag_id, actor="ops", skus=[(123456789, 1)])
    assert await rows(orch, "SELECT id FROM bag_actions") == []
    assert await orch.history(checkout.id) == before
    stats = await http_sandbox.control.stats()
    assert stats["bag_refunds"] == {} and stats["bag_cancels"] == {}


async def test_a_second_action_while_one_is_open_is_refused(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    checkout, bag_id = await submitted(orch)
    await http_sandbox.control.add_fault("cancel_bag", "silent_failure", count=1)
    first = await orch.cancel_bag(checkout.id, bag_id, actor="a")
    assert first.state == "sent"

    with pytest.raises(IllegalTransition, match="already has a cancel sent"):
        await orch.cancel_bag(checkout.id, bag_id, actor="b")
    with pytest.raises(IllegalTransition, match="already has"):
        await orch.refund_bag(checkout.id, bag_id, actor="b", amount=1)

    assert [a.id for a in await orch.bag_actions(checkout.id)] == [first.id]
    assert (await http_sandbox.control.stats())["bag_cancels"] == {str(bag_id): 1}


async def test_a_cancel_whose_202_hid_a_failure_ends_failed_after_the_settle_window(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    checkout, bag_id = await submitted(orch)
    await http_sandbox.control.add_fault("cancel_bag", "silent_failure", count=1)

    action = await orch.cancel_bag(checkout.id, bag_id, actor="support:cy")
    assert action.state == "sent" and action.error is None
    # Within the window nothing is decided: Violet may still apply it.
    assert await reconcile_actions(orch.worker, budget=10) == 0
    await asyncio.sleep(SETTLE_S + 0.2)

    assert await reconcile_actions(orch.worker, budget=10) == 1

    [settled] = await orch.bag_actions(checkout.id)
    assert settled.state == "failed"
    assert settled.error is not None and "Violet did not apply it" in settled.error["message"]
    assert (await http_sandbox.control.stats())["bag_cancels"] == {str(bag_id): 1}
    assert (await bag_at_violet(orch, checkout, bag_id)).status == "ACCEPTED"
    changes = await settled_changes(orch, checkout)
    assert [c["detail"]["state"] for c in changes] == ["failed"]
    settle_event = (await events_of(orch, checkout, "bag_action_settled"))[0]
    assert settle_event.detail["how"] == "read_back"
    # Settled is final: recovery leaves it alone, and a new cancel may now be asked.
    assert await reconcile_actions(orch.worker, budget=10) == 0
    again = await orch.cancel_bag(checkout.id, bag_id, actor="support:cy")
    assert again.state == "succeeded"


async def test_a_cancel_violet_refuses_in_its_answer_is_failed_at_once(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    checkout, bag_id = await submitted(orch)
    # Shipped: still ACCEPTED as far as we know, but the merchant can no longer cancel it.
    await http_sandbox.control.move_bag(checkout.violet_order_id, bag_id, "ship")

    action = await orch.cancel_bag(checkout.id, bag_id, actor="ops")

    assert action.state == "failed" and action.sent_at is not None
    assert action.error is not None
    assert (action.error["class"], action.error["type"]) == ("refused", "CANCELLATION_FAILURE")
    assert [c["detail"]["state"] for c in await settled_changes(orch, checkout)] == ["failed"]
    assert await reconcile_actions(orch.worker, budget=10) == 0  # settled: nothing to read


async def test_a_refund_answered_4xx_is_failed_and_never_sent_again(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    checkout, bag_id = await submitted(orch)
    await http_sandbox.control.add_fault("refund_bag", "error", status=422, count=1)

    action = await orch.refund_bag(checkout.id, bag_id, actor="ops", amount=50)

    assert action.state == "failed"
    assert action.error is not None and action.error["class"] == "permanent"
    assert len(await http_sandbox.control.calls(op="refund_bag")) == 1
    assert await reconcile_actions(orch.worker, budget=10) == 0
    assert len(await http_sandbox.control.calls(op="refund_bag")) == 1


async def test_a_checkout_not_submitted_has_no_bag_to_act_on(orch: Orchestrator) -> None:
    checkout = await orch.start(checkout_request(payment=TOKEN), run=False)
    with pytest.raises(IllegalTransition, match="only a submitted checkout"):
        await orch.cancel_bag(checkout.id, 1, actor="ops")


async def test_no_card_data_or_secret_is_stored_with_an_action(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    checkout, bag_id = await submitted(orch)
    card = "4242424242424242"
    with pytest.raises(InvalidRequest, match="reason"):
        await orch.cancel_bag(checkout.id, bag_id, actor="ops", reason=f"card {card}")
    with pytest.raises(InvalidRequest, match="actor"):
        await orch.cancel_bag(checkout.id, bag_id, actor=card)
    await orch.cancel_bag(checkout.id, bag_id, actor="ops", reason="customer asked")
    stored = await rows(
        orch,
        "SELECT (SELECT string_agg(t::text, ' ') FROM bag_actions t) AS a, "
        "(SELECT string_agg(e::text, ' ') FROM checkout_events e) AS e, "
        "(SELECT string_agg(c::text, ' ') FROM checkout_changes c) AS c",
    )
    text = " ".join(str(v) for v in stored[0].values())
    assert "customer asked" in text  # the search runs over the rows written
    assert card not in text
    # And the database's tripwire refuses one written past these checks.
    with pytest.raises(Exception, match=r"(?i)secret|card"):
        await rows(
            orch,
            "INSERT INTO bag_actions (id, checkout_id, bag_id, kind, actor, reason) "
            "VALUES (%(id)s, %(checkout)s, %(bag)s, 'cancel', 'x', %(reason)s) RETURNING id",
            id=uuid.uuid4(),
            checkout=checkout.id,
            bag=bag_id + 1,
            reason=f"card {card}",
        )


async def test_the_recovery_job_settles_an_open_action_past_its_window(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    """`recover` reads back a cancel whose 202 hid a failure, as `reconcile_actions` alone does."""
    from orchestrator.recovery import RecoveryJob

    checkout, bag_id = await submitted(orch)
    await http_sandbox.control.add_fault("cancel_bag", "silent_failure", count=1)
    action = await orch.cancel_bag(checkout.id, bag_id, actor="support:cy")
    assert action.state == "sent"
    await asyncio.sleep(SETTLE_S + 0.2)

    summary = await RecoveryJob(orch.worker, idle_horizon=0.0).run("once")

    assert summary.actions_settled == 1
    [settled] = await orch.bag_actions(checkout.id)
    assert settled.state == "failed"
    assert (await http_sandbox.control.stats())["bag_cancels"] == {str(bag_id): 1}


async def test_a_second_cancel_after_one_succeeded_is_refused_not_sent(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    """No race at all: support cancels a bag (succeeded, Violet shows CANCELED), then cancels it
    again before any webhook was applied. The read that settled the first is recorded as the
    bag's news, and the checks count the succeeded action itself: nothing is sent again."""
    checkout, bag_id = await submitted(orch)
    first = await orch.cancel_bag(checkout.id, bag_id, actor="support:a")
    assert first.state == "succeeded"

    with pytest.raises(InvalidRequest, match="CANCELED: nothing to cancel"):
        await orch.cancel_bag(checkout.id, bag_id, actor="support:a")
    with pytest.raises(InvalidRequest, match="CANCELED: nothing to refund"):
        await orch.refund_bag(checkout.id, bag_id, actor="support:a", amount=1)

    stats = await http_sandbox.control.stats()
    assert stats["bag_cancels"] == {str(bag_id): 1} and stats["bag_refunds"] == {}
    assert [a.id for a in await orch.bag_actions(checkout.id)] == [first.id]
    [bag] = await rows(
        orch, "SELECT status FROM checkout_bags WHERE checkout_id = %(id)s", id=checkout.id
    )
    assert bag["status"] == "CANCELED"
    feed = await rows(
        orch,
        "SELECT kind, detail FROM checkout_changes WHERE checkout_id = %(id)s "
        "AND kind = 'bag_status' ORDER BY id",
        id=checkout.id,
    )
    assert feed[-1]["detail"]["to"] == "CANCELED"


async def test_news_of_an_earlier_refund_does_not_settle_a_later_refund_violet_dropped(
    orch: Orchestrator, http_sandbox: HttpSandbox, database_url: str
) -> None:
    """Refund 1 (100) succeeds at once. Refund 2 (300) is answered 202 but Violet drops it. The
    news of refund 1 then arrives (a late webhook, or a read-back: PARTIALLY_REFUNDED, 100
    refunded). It proves nothing about refund 2, which stays sent; recovery then ends it
    `failed`. Only news that accounts for its 300 beyond the 100 would settle it."""
    from orchestrator.store import bags

    checkout, bag_id = await submitted(orch)
    assert int(checkout.bags[0]["total"]) > 400
    first = await orch.refund_bag(checkout.id, bag_id, actor="ops", amount=100)
    assert first.state == "succeeded"
    assert checkout.violet_order_id is not None
    news_of_first = (await orch.client.get_order(checkout.violet_order_id)).model_dump(mode="json")

    await http_sandbox.control.add_fault("refund_bag", "silent_failure", count=1)
    second = await orch.refund_bag(checkout.id, bag_id, actor="ops", amount=300)
    assert second.state == "sent"  # 202, nothing moved at Violet

    async with bags.pool(database_url) as pool:
        done = await bags.record_read(pool, "test", checkout.id, news_of_first, via="readback")
    assert done.busy is None and done.settled_actions == []

    bag = await bag_at_violet(orch, checkout, bag_id)
    assert sum(t.amount or 0 for t in bag.transactions if t.type == "REFUND") == 100
    after = {a.id: a for a in await orch.bag_actions(checkout.id)}[second.id]
    assert after.state == "sent", "a refund Violet dropped was settled by another's news"
    await asyncio.sleep(SETTLE_S + 0.2)
    assert await reconcile_actions(orch.worker, budget=10) == 1
    after = {a.id: a for a in await orch.bag_actions(checkout.id)}[second.id]
    assert after.state == "failed"


async def test_a_bag_action_waits_for_no_closed_merchant_budget_and_sends_nothing(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    """The bag's merchant answered 429 a moment ago (its budget closed for a minute): the cancel
    fails unsent, `budget_closed`, for the caller to ask again; the store is not called."""
    checkout, bag_id = await submitted(orch)
    merchant = int(checkout.bags[0]["merchant_id"])
    budgets = orch.worker.runner.budgets
    assert budgets is not None
    await budgets.rate_limited([merchant_key(merchant)], 60.0)

    action = await orch.cancel_bag(checkout.id, bag_id, actor="ops")

    assert (action.state, action.sent_at) == ("failed", None)
    assert action.error is not None and action.error["type"] == "budget_closed"
    assert await http_sandbox.control.calls(op="cancel_bag") == []
    assert (await bag_at_violet(orch, checkout, bag_id)).status != "CANCELED"


async def test_a_429_answered_to_a_refund_closes_its_merchants_budget(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    checkout, bag_id = await submitted(orch)
    merchant = int(checkout.bags[0]["merchant_id"])
    await http_sandbox.control.add_fault("refund_bag", "rate_limit", count=1, retry_after=60)

    action = await orch.refund_bag(checkout.id, bag_id, actor="ops", amount=50)

    assert action.state == "failed"
    assert len(await http_sandbox.control.calls(op="refund_bag")) == 1  # no inline retry
    (budget,) = [b for b in await MerchantBudgets(orch.repo).all() if b.merchant_id == merchant]
    assert budget.rate_limited == 1 and not budget.open
