"""Audit capture of Violet calls, without coupling the client to any storage.

The runner wraps a step in ``with capture_calls() as calls:`` and writes the records itself.
Capture is a context variable, so concurrent checkouts (separate asyncio tasks) never see each
other's calls, and nothing at all is built when nobody is capturing. The client reports every
exchange here (`record_answer`, `record_failure`): one place builds the record and its log line.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from orchestrator import observe
from orchestrator.violet.redact import REDACTED, mask_card_number, scrub_text

if TYPE_CHECKING:
    import httpx

    from orchestrator.errors import VioletError
    from orchestrator.violet.models import BagShippingMethods, Cart, OrderCancellation
    from orchestrator.violet.ops import Op

__all__ = [
    "CallRecord",
    "capture_calls",
    "record_answer",
    "record_failure",
    "recording",
    "summarize_cart",
    "summarize_request",
]

# The client's logger: its one DEBUG line per exchange is documented under that name
# (docs/violet-client.md), and client.py attaches the RedactingFilter to it.
_log = logging.getLogger("orchestrator.violet.client")


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


def recording() -> bool:
    """Whether an answer's summary is wanted (someone captures, or the DEBUG line is on): the
    client's cheap check before it builds one."""
    return _records.get() is not None or _log.isEnabledFor(logging.DEBUG)


def record_answer(
    op: Op,
    path: str,
    response: httpx.Response,
    body: Any,
    summary: dict[str, Any] | None,
    err: VioletError | None,
) -> None:
    """Log and (when someone captures) record one answered exchange."""
    _record(
        op,
        path,
        status=response.status_code,
        latency_ms=float(response.extensions.get("orchestrator_latency_ms", 0.0)),
        body=body,
        summary=summary,
        error=type(err).__name__ if err is not None else None,
        request_id=response.headers.get("x-request-id"),
        outcome=response.status_code,
    )


def record_failure(op: Op, path: str, start: float, body: Any, err: VioletError | None) -> None:
    """Log and record an exchange that brought no answer to read: refused, never sent, cut off,
    failed on the wire, or cancelled (`err` None). `start` is its `time.perf_counter()`."""
    error = type(err).__name__ if err is not None else "CancelledError"
    _record(
        op,
        path,
        status=err.status if err is not None else None,
        latency_ms=(time.perf_counter() - start) * 1000.0,
        body=body,
        summary=None,
        error=error,
        request_id=None,
        outcome=error,
    )


def _record(
    op: Op,
    path: str,
    *,
    status: int | None,
    latency_ms: float,
    body: Any,
    summary: dict[str, Any] | None,
    error: str | None,
    request_id: str | None,
    outcome: int | str,
) -> None:
    observe.violet_call(path, op.method, outcome, latency_ms / 1000.0)
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug(
            "violet %s %s %s -> %s in %.1f ms", op.name, op.method, path, outcome, latency_ms
        )
    records = _records.get()
    if records is not None:
        records.append(
            CallRecord(
                op=op.name,
                method=op.method,
                path=path,
                status=status,
                latency_ms=latency_ms,
                request=summarize_request(body),
                response=summary,
                error=error,
                request_id=request_id,
            )
        )


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


def summarize_methods(value: list[BagShippingMethods]) -> dict[str, Any]:
    """The shipping methods offered, as ids per bag."""
    return {
        "bags": [
            {
                "bag_id": b.bag_id,
                "shipping_method_ids": [m.shipping_method_id for m in b.shipping_methods],
            }
            for b in value
        ]
    }


def summarize_orders(value: list[Cart]) -> dict[str, Any]:
    """An order search answer: each order's id and status."""
    return {"orders": [{"id": c.id, "status": c.status} for c in value]}


def summarize_cancel(value: OrderCancellation) -> dict[str, Any]:
    return {"order_id": value.order_id, "status": value.status}
