"""What a drive records of a step besides its state: audit events, cart summaries, error words.

The audit log is the account of every checkout (which Violet calls were made, what a reconcile
found, which error ended a step), so its shapes are built here, in one place, apart from the
step protocol that decides when to write them. The row's copy of Violet's cart lives here too:
it is what the row keeps of an answer, as the cart summary in a step's transition event is what
the audit keeps of it.
"""

from __future__ import annotations

from typing import Any

from orchestrator.engine.steps import Advance, Decision, Defer, Park, Pending, Redo
from orchestrator.store.records import CheckoutRow, Event
from orchestrator.violet import CallRecord, Cart


def call_events(calls: list[CallRecord], row: CheckoutRow | None = None) -> list[Event]:
    """One audit event per Violet call (bodies already redacted by the client); with `row`, each
    names the step's attempt (a bag action's calls have none)."""
    return [
        Event(
            "violet_call",
            step=call.op,
            attempt=row.attempt if row is not None else None,
            http_method=call.method,
            http_path=call.path,
            http_status=call.status,
            latency_ms=round(call.latency_ms, 3),
            request_body=call.request,
            response_body=call.response,
            error_class=call.error,
        )
        for call in calls
    ]


#: The keys of an error summary that have columns of their own in its audit event.
_ERROR_COLUMNS = frozenset({"class", "type", "message", "status", "step"})


def error_event(error: dict[str, Any], step: str | None, *, attempt: int | None = None) -> Event:
    """The audit event of an error summary (decisions.error_summary), all of it: its words and
    status in their columns, the rest (a decline's Violet type and code, the failed probes in a
    row) in `detail`. The trail is the only place an earlier attempt's error stays."""
    extra = {k: v for k, v in error.items() if k not in _ERROR_COLUMNS and v is not None}
    return Event(
        "error",
        step=step,
        attempt=attempt,
        error_class=error.get("class"),
        error_type=error.get("type"),
        error_message=error.get("message"),
        http_status=error.get("status"),
        detail=extra or None,
    )


def decision_detail(decision: Decision) -> dict[str, Any]:
    """What a reconcile decided, and from what, for its `reconciled` event."""
    kind = type(decision).__name__.lower()
    detail: dict[str, Any] = {"decision": kind}
    if isinstance(decision, Redo | Defer | Pending):
        detail.update(decision.detail)
    elif isinstance(decision, Advance):
        detail.update(decision.detail or {})
        detail["found"] = "done"
    elif isinstance(decision, Park):
        detail["reason"] = decision.reason
    else:
        detail["error"] = decision.error
    return detail


def cart_summary(cart: Cart | None) -> dict[str, Any] | None:
    """What a step's transition event keeps of the cart it ended with: enough to follow its
    totals, none of its contents."""
    if cart is None:
        return None
    return {"cart_id": cart.id, "status": cart.status, "priced": cart.priced, "total": cart.total}


def absorb_cart(row: CheckoutRow, cart: Cart) -> None:
    """Copy what we keep of Violet's cart into the row: ids, totals, per-bag status."""
    if row.violet_order_id is None:
        row.violet_order_id = cart.id
    row.violet_status = cart.status
    for name in ("sub_total", "shipping_total", "tax_total", "discount_total", "total"):
        value = getattr(cart, name)
        if value is not None:
            setattr(row, name, value)
    if cart.bags:
        row.bags = [
            {
                "bag_id": bag.id,
                "merchant_id": bag.merchant_id,
                "merchant_name": bag.merchant_name,
                "status": bag.status,
                "financial_status": bag.financial_status,
                "needs_shipping": bag.needs_shipping,
                "total": bag.total,
            }
            for bag in cart.bags
        ]


def poison_error(row: CheckoutRow) -> dict[str, Any]:
    """Why a checkout its workers keep dying on is parked as failed instead of retried."""
    return {
        "class": "permanent",
        "type": "poison",
        "message": f"worker died {row.recoveries} times on step "
        f"{row.pending_step}; parked instead of retrying forever",
        "status": None,
        "step": row.pending_step,
    }


def exhausted_error(row: CheckoutRow, step: str) -> dict[str, Any]:
    """Why a step that used up its attempts ends the checkout (with the last error's words)."""
    last = row.last_error or {}
    return {
        "class": "permanent",
        "type": "retries_exhausted",
        "message": f"gave up on {step} after {row.attempt} attempts; last error: "
        f"{last.get('type')}: {last.get('message')}",
        "status": last.get("status"),
        "step": step,
    }
