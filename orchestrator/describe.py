"""Words for checkouts and their audit events, shared by the CLI and the web console.

Plain strings only (no terminal styling, no markup): the CLI prints them, the console puts them
in autoescaped templates, so both tell support the same thing in the same words. Text that came
from Violet or a caller is returned as is; making it safe for a terminal or a page is the
caller's job (`logs.printable`, Jinja2's autoescape).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from orchestrator.checkout import AuditEvent, iso

__all__ = [
    "ERROR_CLASS_WORDS",
    "ERROR_TYPE_WORDS",
    "bag_move",
    "error_line",
    "event_note",
    "http_line",
    "money",
    "moved",
    "when",
]

_ZERO_DECIMAL: Final = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "HUF", "TWD", "UGX"})

#: What each error class means for the checkout, in an operator's words.
ERROR_CLASS_WORDS: Final[dict[str, str]] = {
    "permanent": "Violet's final word: retrying the same request cannot help",
    "retryable": "temporary: Violet did not apply the request, and it is retried on schedule",
    "outcome_unknown": "the answer was lost: Violet is read before anything is sent again",
    "auth": "Violet refused our credentials",
    "config": "our configuration (credentials) was refused: fix it, then the checkout resumes",
    "internal": "an error inside the orchestrator (see its logs)",
    "refused": "Violet refused the request",
}
#: Error types whose meaning is not their class's: the orchestrator gave up, Violet did not.
ERROR_TYPE_WORDS: Final[dict[str, str]] = {
    "retries_exhausted": (
        "the step kept failing for a temporary reason until its attempts ran out: an operational"
        " failure, not Violet's final word"
    ),
    "poison": "workers kept dying on this step, so it was parked instead of retried forever",
    "credentials_refused": ERROR_CLASS_WORDS["config"],
}


def money(cents: int | None, currency: str) -> str:
    """Integer minor units as a readable amount: 12345 USD -> `123.45 USD`."""
    if cents is None:
        return "-"
    if currency in _ZERO_DECIMAL:
        return f"{cents} {currency}"
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d} {currency}"


def when(value: datetime | None) -> str:
    """ISO-8601 UTC, or `-`."""
    return iso(value) or "-"


def error_line(error: dict[str, Any] | None) -> str:
    """An error summary in one line: `permanent / card_declined / HTTP 400 at submit: ...`."""
    if not error:
        return "-"
    parts = [str(error.get("class") or "?"), str(error.get("type") or "?")]
    if error.get("status") is not None:
        parts.append(f"HTTP {error['status']}")
    if error.get("step"):
        parts.append(f"at {error['step']}")
    message = error.get("message")
    return " / ".join(parts) + (f": {message}" if message else "")


def http_line(event: AuditEvent) -> str:
    """A Violet call: `POST /checkout/cart/1/submit -> 200 41ms` (empty for other events)."""
    if not event.http_method and event.http_status is None:
        return ""
    latency = f" {event.latency_ms:.0f}ms" if event.latency_ms is not None else ""
    status = event.http_status if event.http_status is not None else "no answer"
    if not event.http_method and not event.http_path:
        return f"HTTP {status}{latency}"  # an error event: the status of the call it is about
    return f"{event.http_method or ''} {event.http_path or ''} -> {status}{latency}".strip()


def moved(event: AuditEvent) -> str:
    """`from -> to` of a state change (empty when the event changed no state)."""
    if event.from_state or event.to_state:
        return f"{event.from_state or ''} -> {event.to_state or ''}"
    return ""


def bag_move(bag_id: Any, old: Any, new: Any, fulfillment: Any = None) -> str:
    """`bag 1 ACCEPTED -> COMPLETED/SHIPPED`; first news of a bag shows its status alone."""
    to = f"{new}/{fulfillment}" if fulfillment else str(new)
    return f"bag {bag_id} {old} -> {to}" if old else f"bag {bag_id} {to}"


def _bag_news(detail: dict[str, Any]) -> str:
    """The bags a webhook or read-back moved, e.g. `ORDER_COMPLETED: bag 1 ACCEPTED -> ...`."""
    moves = [
        bag_move(b.get("bag_id"), b.get("from"), b.get("to"), b.get("fulfillment_status"))
        for b in detail.get("bags") or ()
        if b.get("from") != b.get("to")
    ]
    head = detail.get("event_type") or detail.get("via") or ""
    return f"{head}: {', '.join(moves) or 'no bag moved'}".lstrip(": ")


def _after_submit(event: AuditEvent) -> str | None:
    """The detail line of an event of a checkout's life after submit (None: not one)."""
    detail = event.detail_kept()
    if event.kind in ("webhook_applied", "bag_read_back"):
        return _bag_news(detail)
    if event.kind.startswith("bag_action_"):
        state = f": {detail['state']}" if "state" in detail else ""
        return f"{detail.get('kind')} of bag {detail.get('bag_id')} by {detail.get('actor')}{state}"
    return None


def event_note(event: AuditEvent) -> str:
    """What an event adds to its kind, state change and call: its error, or the detail that
    matters (the bags a webhook moved, what a reconcile found, why it waits, who asked), and
    which of its detail values retention pruned."""
    text = _event_words(event)
    removed = [part.removeprefix("detail.") for part in event.pruned if part.startswith("detail.")]
    if removed:
        text = f"{text} (pruned: {', '.join(removed)})".lstrip()
    return text


def _event_words(event: AuditEvent) -> str:
    if not (event.error_class or event.error_type or event.error_message):
        late = _after_submit(event)
        if late is not None:
            return late
        detail = event.detail_kept()
        if event.kind in ("lease_taken_over", "reconciled", "retry_scheduled") and detail:
            return ", ".join(f"{k}={v}" for k, v in detail.items())
        if event.kind == "waiting" and detail:
            return f"reason={detail.get('reason')}"
        if event.kind == "transition" and detail.get("partial"):
            return f"partial: accepted bags {detail.get('accepted_bags')}, rejected " + str(
                detail.get("rejected_bags")
            )
        if detail.get("actor"):
            return f"by {detail['actor']}"
        return ""
    head = "/".join(filter(None, [event.error_class, event.error_type]))
    return f"{head}: {event.error_message}" if event.error_message else head
