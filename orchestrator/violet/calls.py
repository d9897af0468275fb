"""Audit capture of Violet calls, without coupling the client to any storage.

The runner wraps a step in ``with capture_calls() as calls:`` and writes the records itself.
Capture is a context variable, so concurrent checkouts (separate asyncio tasks) never see each
other's calls, and nothing at all is built when nobody is capturing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from orchestrator.violet.redact import REDACTED, mask_card_number, scrub_text

if TYPE_CHECKING:
    from orchestrator.violet.models import Cart

__all__ = ["CallRecord", "capture_calls", "summarize_cart", "summarize_request"]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One HTTP exchange with Violet, as the audit trail keeps it (allow-listed, redacted)."""

    op: str
    method: str
    path: str
    status: int | None
    latency_ms: float
    request: dict[str, Any] | None
    response: dict[str, Any] | None
    error: str | None
    request_id: str | None


_records: ContextVar[list[CallRecord] | None] = ContextVar("violet_call_records", default=None)


@contextlib.contextmanager
def capture_calls() -> Iterator[list[CallRecord]]:
    """Collect a CallRecord for every Violet call made in this context (failed calls included).

    A nested capture shadows the outer one for its duration.
    """
    records: list[CallRecord] = []
    token = _records.set(records)
    try:
        yield records
    finally:
        _records.reset(token)


def current_records() -> list[CallRecord] | None:
    """The active capture list, or None (the client's cheap "is anyone listening" check)."""
    return _records.get()


# ---------------------------------------------------------------- allow-listed summaries

# Keys whose (scalar) values may be recorded as they are.
_SCALAR_KEYS: Final = frozenset(
    {
        "sku_id",
        "quantity",
        "app_order_id",
        "base_currency",
        "currency",
        "wallet_based_checkout",
        "bag_id",
        "shipping_method_id",
        "payment_provider",
        "intent_based_capture",
        "card_exp_month",
        "card_exp_year",
        "same_address",
        "reason",
        "reason_code",
        "order_id",
        "status",
        "country",
        "state",
        "city",
        "postal_code",
        "type",
        "exclude_in_progress",
    }
)
# Keys whose nested values are summarised recursively.
_NESTED_KEYS: Final = frozenset(
    {"skus", "customer", "shipping_address", "billing_address", "order_customer", "selections"}
)
# Present but never shown: the audit says *that* they were sent, not what.
_MARKER_KEYS: Final = frozenset(
    {"first_name", "last_name", "email", "address_1", "address_2", "phone", "name", "token"}
)


def _summarize(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "card_number":
                out[key] = mask_card_number(item)
            elif key in _SCALAR_KEYS:
                out[key] = scrub_text(item) if isinstance(item, str) else item
            elif key in _NESTED_KEYS:
                out[key] = _summarize(item)
            elif key in _MARKER_KEYS and item is not None:
                out[key] = REDACTED
        return out
    if isinstance(value, list):
        return [_summarize(item) for item in value]
    return None


def summarize_request(body: Any) -> dict[str, Any] | None:
    """The allow-listed part of a request body (card number as last four, no names or secrets)."""
    if body is None:
        return None
    if isinstance(body, list):
        return {"items": _summarize(body)}
    summary = _summarize(body)
    return summary if isinstance(summary, dict) else None


def summarize_cart(cart: Cart) -> dict[str, Any]:
    """What the audit needs of a cart answer: ids, status, totals, per-bag outcome, errors."""
    return {
        "id": cart.id,
        "status": cart.status,
        "priced": cart.priced,
        "total": cart.total,
        "bags": [
            {
                "id": bag.id,
                "merchant_id": bag.merchant_id,
                "status": bag.status,
                "financial_status": bag.financial_status,
            }
            for bag in cart.bags
        ],
        "errors": [
            {
                "type": err.type,
                "message": scrub_text(err.message) if err.message else err.message,
                "bag_id": err.bag_id,
            }
            for err in cart.errors
        ],
    }


def summarize_error_body(body: Any) -> dict[str, Any] | None:
    """The allow-listed part of an (already redacted) Violet error body."""
    if isinstance(body, dict):
        keep = {
            k: body[k] for k in ("code", "error", "error_code", "status", "message") if k in body
        }
        errors = body.get("errors")
        if isinstance(errors, list):
            keep["errors"] = [
                {k: e.get(k) for k in ("type", "message", "bag_id")}
                for e in errors
                if isinstance(e, dict)
            ]
        return keep
    if isinstance(body, str):
        return {"text": body}
    return None
