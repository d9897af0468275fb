"""What a Violet webhook says, read from its headers and body (shared/violet/README.md §5).

Headers: `X-Violet-Event-Id` (the dedupe key), `X-Violet-Topic` (the event type),
`X-Violet-Order-Id` and `X-Violet-Bag-Id` (which order and bag changed). Violet signs the body
only: a header can be changed by whoever replays a captured body, so which order an event is
about is read from the signed body alone. Order events carry the full Order object as their
body: its `id` is the order; an `X-Violet-Order-Id` that says otherwise makes the event refused
(stored `ignored` with the reason, never applied), and `X-Violet-Bag-Id` is kept only when it
names one of the body's bags. Merchant events (`MERCHANT_DISABLED`, `MERCHANT_ENABLED`, ...)
carry the merchant, whose id is kept so the applier can park that merchant's checkouts. Every
event is stored, ours or not, known type or not: deciding what it means is the applier's job,
and a stored event can be re-read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from orchestrator.errors import OrchestratorError
from orchestrator.store.inbox import IGNORED, PENDING, InboxEvent

EVENT_ID_HEADER: Final = "x-violet-event-id"
TOPIC_HEADER: Final = "x-violet-topic"
ORDER_ID_HEADER: Final = "x-violet-order-id"
BAG_ID_HEADER: Final = "x-violet-bag-id"

ORDER_CANCELED: Final = "ORDER_CANCELED"
#: Violet's guides spell it with two Ls, its API enums with one: both mean the same event.
_SPELLINGS: Final = {"ORDER_CANCELLED": ORDER_CANCELED}

# The bounds of the inbox's CHECKs: a header outside them is refused with 400, not stored.
_EVENT_ID: Final = re.compile(r"[\x21-\x7e]{1,200}")
_EVENT_TYPE: Final = re.compile(r"[A-Z0-9_]{1,100}")
_MAX_ID: Final = 2**63 - 1


class BadEvent(OrchestratorError, ValueError):
    """The request is signed but is no event we can store (a missing id, a malformed header)."""


def canonical_type(topic: str) -> str:
    """The one spelling stored for an event type (`ORDER_CANCELLED` -> `ORDER_CANCELED`)."""
    upper = topic.strip().upper()
    return _SPELLINGS.get(upper, upper)


def _as_id(value: Any) -> int | None:
    """A Violet id (a positive integer, sent as a number or a string), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 0 < value <= _MAX_ID else None


def parse(headers: Mapping[str, str], body: Any) -> InboxEvent:
    """The inbox row for a verified request; raises BadEvent when it cannot be one.

    `headers` are looked up by lower-case name.
    """
    event_id = (headers.get(EVENT_ID_HEADER) or "").strip()
    if not _EVENT_ID.fullmatch(event_id):
        raise BadEvent("missing or malformed X-Violet-Event-Id")
    event_type = canonical_type(headers.get(TOPIC_HEADER) or "")
    if not _EVENT_TYPE.fullmatch(event_type):
        raise BadEvent("missing or malformed X-Violet-Topic")
    fields = body if isinstance(body, dict) else {}
    order_id, refused = None, None
    if event_type.startswith("ORDER_"):
        order_id = _as_id(fields.get("id"))
        refused = _order_header_refusal(headers.get(ORDER_ID_HEADER), order_id)
    merchant_id = _as_id(fields.get("merchant_id"))
    if merchant_id is None and event_type.startswith("MERCHANT_"):
        merchant_id = _as_id(fields.get("id"))
    bag_id = _as_id(headers.get(BAG_ID_HEADER))
    if bag_id is not None and bag_id not in _bag_ids(fields):
        bag_id = None  # unsigned, and the signed body does not back it
    return InboxEvent(
        event_id=event_id,
        event_type=event_type,
        body=body,
        violet_order_id=order_id,
        bag_id=bag_id,
        merchant_id=merchant_id,
        state=PENDING if refused is None else IGNORED,
        reason=refused,
    )


def _order_header_refusal(header: str | None, order_id: int | None) -> str | None:
    """Why an event whose `X-Violet-Order-Id` contradicts its signed body is refused (None: the
    header is absent or agrees)."""
    value = (header or "").strip()
    if not value or _as_id(value) == order_id:
        return None
    return (
        f"X-Violet-Order-Id {value[:30]!r} is not the signed body's order id {order_id}: the "
        "header is not signed, the event is not applied"
    )


def _bag_ids(fields: Mapping[str, Any]) -> set[int]:
    """The ids of the bags in an Order body."""
    bags = fields.get("bags")
    if not isinstance(bags, list):
        return set()
    found = (_as_id(bag.get("id")) for bag in bags if isinstance(bag, dict))
    return {bag_id for bag_id in found if bag_id is not None}
