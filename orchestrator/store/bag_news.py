"""Violet's news about an order's bags, read from its Order JSON: one reading for every source.

A webhook's body and a read-back's answer are both Violet's Order; each bag's status, the time
the news is from (the order's `date_last_modified`), fulfilment, and the amounts refunded and
canceled are read here, leniently (an unknown status or a malformed field is skipped, never
guessed), and `is_newer` decides whether a piece of news replaces what is held. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from orchestrator import bag_states

# Fulfilment has no status graph; on news of the same time its later value wins.
_FULFILLMENT_RANK: Final = {"PROCESSING": 0, "SHIPPED": 1, "DELIVERED": 2}
_FAILED_TRANSACTION: Final = frozenset({"FAILED", "ERROR", "PENDING", "DECLINED", "CANCELED"})
_MAX_ID: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class BagNews:
    """One bag as Violet showed it at `at`."""

    bag_id: int
    status: str
    at: datetime
    merchant_id: int | None = None
    financial_status: str | None = None
    fulfillment_status: str | None = None
    currency: str | None = None
    refunded_amount: int = 0
    canceled_amount: int = 0


@dataclass(frozen=True, slots=True)
class OrderNews:
    """An Order as Violet showed it at `at`: its status and its bags."""

    order_id: int | None
    violet_status: str | None
    at: datetime
    bags: tuple[BagNews, ...] = ()

    @property
    def submitted(self) -> bool:
        """Violet has taken the order (it is past IN_PROGRESS, or a bag is)."""
        if self.violet_status not in (None, bag_states.IN_PROGRESS):
            return True
        return any(bag.status != bag_states.IN_PROGRESS for bag in self.bags)


# -- reading the news -----------------------------------------------------------------------------


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 0 <= value <= _MAX_ID else None


def _as_text(value: Any, limit: int = 100) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def parse_time(value: Any) -> datetime | None:
    """Violet's timestamps (`2023-08-31T17:55:36.000Z`), timezone-aware; None if unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _refunded(transactions: Any) -> int:
    """The sum of the bag's REFUND transactions that went through."""
    total = 0
    for item in transactions if isinstance(transactions, list) else ():
        if not isinstance(item, Mapping) or str(item.get("type") or "").upper() != "REFUND":
            continue
        if str(item.get("status") or "").upper() in _FAILED_TRANSACTION:
            continue
        total += _as_int(item.get("amount")) or 0
    return total


def _bag_news(bag: Mapping[str, Any], at: datetime, currency: str | None) -> BagNews | None:
    bag_id = _as_int(bag.get("id"))
    status = bag.get("status")
    if not bag_id or not isinstance(status, str) or not bag_states.is_status(status):
        return None  # a status this code does not know is not news it can keep
    total = _as_int(bag.get("total")) or 0
    return BagNews(
        bag_id=bag_id,
        status=status,
        at=at,
        merchant_id=_as_int(bag.get("merchant_id")),
        financial_status=_as_text(bag.get("financial_status")),
        fulfillment_status=_as_text(bag.get("fulfillment_status")),
        currency=_currency(bag.get("currency")) or currency,
        refunded_amount=_refunded(bag.get("transactions")),
        canceled_amount=total if status == bag_states.CANCELED else 0,
    )


def _currency(value: Any) -> str | None:
    return value if isinstance(value, str) and len(value) == 3 and value.isupper() else None


def news_from_order(order: Any, *, fallback_at: datetime) -> OrderNews:
    """The news in one Order (JSON): the time it is from is its `date_last_modified`
    (`fallback_at` when it has none), the same for each of its bags."""
    fields: Mapping[str, Any] = order if isinstance(order, Mapping) else {}
    at = parse_time(fields.get("date_last_modified")) or fallback_at
    currency = _currency(fields.get("currency"))
    raw_bags = fields.get("bags")
    found = (
        _bag_news(bag, at, currency)
        for bag in (raw_bags if isinstance(raw_bags, list) else ())
        if isinstance(bag, Mapping)
    )
    status = fields.get("status")
    return OrderNews(
        order_id=_as_int(fields.get("id")),
        violet_status=_as_text(status, 50) if isinstance(status, str) else None,
        at=at,
        bags=tuple(bag for bag in found if bag is not None),
    )


# -- deciding -------------------------------------------------------------------------------------


def is_newer(held: Mapping[str, Any], news: BagNews) -> bool:
    """Whether `news` replaces the bag row `held`: by `bag_states.supersedes`, or, for news of
    the very same time and status, when it shows the bag further along (shipped, more refunded)."""
    if bag_states.supersedes(held["status"], held["status_at"], news.status, news.at):
        return True
    if news.status != held["status"] or news.at != held["status_at"]:
        return False
    return (
        _FULFILLMENT_RANK.get(news.fulfillment_status or "", -1)
        > _FULFILLMENT_RANK.get(held["fulfillment_status"] or "", -1)
        or news.refunded_amount > held["refunded_amount"]
        or news.canceled_amount > held["canceled_amount"]
    )
