"""Reading Violet's Order JSON as bag news, and deciding what replaces what is held."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestrator.store.bag_news import is_newer, news_from_order

AT = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def order(**bag: Any) -> dict[str, Any]:
    return {
        "id": 7,
        "status": "COMPLETED",
        "currency": "EUR",
        "date_last_modified": "2026-12-05T10:00:00.250Z",
        "bags": [{"id": 70, "status": "ACCEPTED", "merchant_id": 3, "total": 900, **bag}],
    }


def test_the_news_is_from_the_orders_last_modification_for_every_bag() -> None:
    news = news_from_order(order(), fallback_at=AT)
    assert news.at == datetime(2026, 12, 5, 10, 0, 0, 250000, tzinfo=UTC)
    [bag] = news.bags
    assert (bag.bag_id, bag.status, bag.merchant_id, bag.currency, bag.at) == (
        70,
        "ACCEPTED",
        3,
        "EUR",
        news.at,
    )
    assert news_from_order({**order(), "date_last_modified": None}, fallback_at=AT).at == AT


def test_refunds_count_only_refund_transactions_that_went_through() -> None:
    transactions = [
        {"type": "CAPTURE", "status": "COMPLETED", "amount": 900},
        {"type": "REFUND", "status": "COMPLETED", "amount": 200},
        {"type": "REFUND", "status": "FAILED", "amount": 300},
        {"type": "refund", "amount": 50},
    ]
    [bag] = news_from_order(order(transactions=transactions), fallback_at=AT).bags
    assert (bag.refunded_amount, bag.canceled_amount) == (250, 0)
    [canceled] = news_from_order(order(status="CANCELED"), fallback_at=AT).bags
    assert canceled.canceled_amount == 900


def test_unknown_statuses_and_malformed_bags_are_skipped_not_guessed() -> None:
    body = order(status="TELEPORTED")
    body["bags"] += [{"id": "x", "status": "ACCEPTED"}, "junk", {"id": 71, "status": "REJECTED"}]
    news = news_from_order(body, fallback_at=AT)
    assert [(b.bag_id, b.status) for b in news.bags] == [(71, "REJECTED")]
    assert news_from_order(["not", "an", "order"], fallback_at=AT).bags == ()


def test_same_status_same_time_is_newer_only_when_further_along() -> None:
    held = {
        "status": "ACCEPTED",
        "status_at": AT,
        "fulfillment_status": "PROCESSING",
        "refunded_amount": 0,
        "canceled_amount": 0,
    }
    [shipped] = news_from_order(
        {**order(fulfillment_status="SHIPPED"), "date_last_modified": AT.isoformat()},
        fallback_at=AT,
    ).bags
    assert is_newer(held, shipped)
    assert not is_newer({**held, "fulfillment_status": "SHIPPED"}, shipped)
    [older_completed] = news_from_order(
        {**order(status="COMPLETED"), "date_last_modified": "2026-12-05T09:00:00Z"},
        fallback_at=AT,
    ).bags
    assert is_newer(held, older_completed)  # a later status, however late it arrives
    assert not is_newer({**held, "status": "COMPLETED"}, shipped)  # never backwards
