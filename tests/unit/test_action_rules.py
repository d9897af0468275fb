"""The checks a bag's cancel or refund passes, and what proves one done (pure: no database).

The stored checks count the actions already asked, not only the bag's recorded news: a cancel
or refund that succeeded is proof of the bag's state even when no news of it was recorded.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.engine.action_rules import CANCEL, REFUND, Ask, check_ask, refund_plan
from orchestrator.errors import IllegalTransition, InvalidRequest
from orchestrator.store.action_records import proves_done
from orchestrator.store.actions import BagAction, BagNews
from orchestrator.store.records import CheckoutRow
from orchestrator.violet.models import Cart

BAG, TOTAL = 11, 1000
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def row() -> CheckoutRow:
    return CheckoutRow(
        id=uuid.uuid4(),
        app_order_id="order-1",
        state="submitted",
        request={},
        payment_kind="token",
        currency="USD",
        violet_order_id=7,
        bags=[{"bag_id": BAG, "status": "ACCEPTED", "total": TOTAL}],
    )


def action(kind: str, state: str, **answer: Any) -> BagAction:
    return BagAction(
        id=uuid.uuid4(),
        checkout_id=uuid.uuid4(),
        bag_id=BAG,
        kind=kind,
        state=state,
        amount=None,
        skus=None,
        reason=None,
        actor="ops",
        requested_at=NOW,
        sent_at=NOW,
        send_by=NOW,
        settled_at=NOW,
        answer=answer or None,
        error=None,
    )


def test_a_succeeded_cancel_refuses_another_action_before_any_news_of_it() -> None:
    done = [action(CANCEL, "succeeded")]
    with pytest.raises(InvalidRequest, match="CANCELED"):
        check_ask(row(), Ask(CANCEL, BAG, "ops"), None, done)
    with pytest.raises(InvalidRequest, match="CANCELED"):
        check_ask(row(), Ask(REFUND, BAG, "ops", amount=1), None, done)
    check_ask(row(), Ask(CANCEL, BAG, "ops"), None, [action(CANCEL, "failed")])  # asks again


def test_an_open_action_refuses_a_second_one() -> None:
    with pytest.raises(IllegalTransition, match="already has a refund sent"):
        check_ask(row(), Ask(CANCEL, BAG, "ops"), None, [action(REFUND, "sent")])


def test_succeeded_refunds_count_against_what_is_left_even_ahead_of_the_news() -> None:
    done = [action(REFUND, "succeeded", before={"refunded": 0, "amount": 600})]
    news = BagNews(status="ACCEPTED", refunded_amount=0)  # news older than the refund
    with pytest.raises(InvalidRequest, match="at most 400"):
        check_ask(row(), Ask(REFUND, BAG, "ops", amount=401), news, done)
    check_ask(row(), Ask(REFUND, BAG, "ops", amount=400), news, done)
    everything = [*done, action(REFUND, "succeeded", before={"refunded": 600, "amount": 400})]
    with pytest.raises(InvalidRequest, match="REFUNDED"):
        check_ask(row(), Ask(REFUND, BAG, "ops", amount=1), news, everything)


def test_a_refund_is_planned_only_on_a_bag_violet_shows_not_final() -> None:
    order = Cart.model_validate(
        {"id": 7, "bags": [{"id": BAG, "status": "CANCELED", "total": TOTAL}]}
    )
    with pytest.raises(InvalidRequest, match="CANCELED at Violet"):
        refund_plan(order, Ask(REFUND, BAG, "ops", amount=1))


@pytest.mark.parametrize(
    ("status", "refunded", "done"),
    [
        ("PARTIALLY_REFUNDED", 100, False),  # the earlier refund's news: 100 was there before
        ("PARTIALLY_REFUNDED", 399, False),
        ("PARTIALLY_REFUNDED", 400, True),
        ("REFUNDED", 100, True),
    ],
)
def test_a_refund_is_proved_done_only_by_its_own_amount_beyond_what_came_before(
    status: str, refunded: int, done: bool
) -> None:
    assert proves_done(REFUND, status, refunded, {"refunded": 100, "amount": 300}) is done


def test_a_refund_without_its_plan_is_proved_done_only_by_a_refunded_bag() -> None:
    assert not proves_done(REFUND, "PARTIALLY_REFUNDED", 10**6, None)
    assert proves_done(CANCEL, "CANCELED", 0, None)
    assert not proves_done(CANCEL, "REFUNDED", 0, None)
