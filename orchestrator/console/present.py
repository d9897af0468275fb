"""What the pages show of a checkout, its timeline and its bags, in an operator's words.

The one-line wording is `orchestrator.describe`'s, shared with the CLI; this adds what a page has
room for: a sentence on the last error, the state of the step in flight, the JSON bodies of a
Violet call (redacted when they were stored). Everything returned is plain text or plain data:
the templates escape it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from orchestrator import states
from orchestrator.checkout import AuditEvent, Checkout
from orchestrator.describe import (
    ERROR_CLASS_WORDS,
    ERROR_TYPE_WORDS,
    event_note,
    http_line,
    money,
    moved,
    when,
)

__all__ = [
    "Entry",
    "ago",
    "bag_rows",
    "error_sentence",
    "flight_sentence",
    "kind_class",
    "timeline",
]

#: Event kinds by the look they get on the timeline.
_KIND_CLASSES: Final[dict[str, str]] = {
    "error": "bad",
    "retry_scheduled": "warn",
    "lease_taken_over": "odd",
    "reconciled": "odd",
    "outcome_pending": "odd",
    "transition": "move",
    "canceled": "warn",
    "violet_call": "call",
    "webhook_applied": "news",
    "bag_read_back": "news",
}


def kind_class(kind: str) -> str:
    if kind.startswith("bag_action_"):
        return "act"
    return _KIND_CLASSES.get(kind, "plain")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """`3 min ago`, `in 2 h`: how far a time is from now, roughly."""
    if value is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            amount = f"{seconds / size:.0f} {unit}"
            break
    else:
        amount = f"{seconds:.0f} s"
    return f"in {amount}" if future else f"{amount} ago"


def error_sentence(checkout: Checkout) -> str | None:
    """The last error in plain words: where it happened, what Violet said, what it means now."""
    error = checkout.last_error
    if not error:
        return None
    kind = str(error.get("class") or "")
    where = f" at {error['step']}" if error.get("step") else ""
    status = f" (HTTP {error['status']})" if error.get("status") is not None else ""
    meaning = ERROR_TYPE_WORDS.get(
        str(error.get("type")), ERROR_CLASS_WORDS.get(kind, kind or "unclassified")
    )
    if checkout.state == states.FAILED:
        head = f"Failed{where}: {error.get('type') or 'error'}{status}"
    elif checkout.next_attempt_at is not None and not checkout.is_waiting:
        head = (
            f"Last attempt{where} failed: {error.get('type') or 'error'}{status}; next attempt "
            f"{when(checkout.next_attempt_at)}"
        )
    else:
        head = f"Last error{where}: {error.get('type') or 'error'}{status}"
    decline = error.get("decline_code")
    if decline and decline != error.get("type"):
        head += f", decline code {decline}"
    return f"{head}. {meaning[:1].upper()}{meaning[1:]}."


def flight_sentence(checkout: Checkout, now: datetime | None = None) -> str | None:
    """What is happening to the checkout's pending step, if anything."""
    if checkout.is_terminal:
        return None
    now = now or datetime.now(UTC)
    if checkout.in_flight and checkout.pending_step:
        lease = (
            f"held by {checkout.lease_owner}"
            if checkout.lease_owner
            else "no worker holds it: recovery reconciles it with Violet"
        )
        return (
            f"Step {checkout.pending_step} is in flight (its outcome is not recorded yet); {lease}."
        )
    if checkout.pending_step and checkout.next_attempt_at is not None:
        due = (
            "due now"
            if checkout.next_attempt_at <= now
            else f"due {ago(checkout.next_attempt_at, now)}"
        )
        return f"Next step {checkout.pending_step}, attempt {checkout.attempt or 1}, {due}."
    if checkout.is_waiting:
        return f"Waiting for input: {checkout.waiting_reason or checkout.state}."
    return None


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of the timeline."""

    seq: int
    at: str
    kind: str
    css: str
    moved: str
    step: str
    attempt: str
    call: str
    note: str
    actor: str | None
    worker: str
    bodies: list[tuple[str, str]]


def _moment(at: datetime) -> str:
    """`2024-05-01 12:00:00.123Z`: a timeline's time to the millisecond, in UTC."""
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d}Z"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def timeline(events: list[AuditEvent]) -> list[Entry]:
    """The audit trail as rows, oldest first, each with its JSON (request, answer, detail)."""
    entries = []
    for event in events:
        bodies = [
            (label, _pretty(value))
            for label, value in (
                ("request", event.request_body),
                ("response", event.response_body),
                ("detail", event.detail),
            )
            if value
        ]
        actor = (event.detail or {}).get("actor")
        note = event_note(event)
        if actor and note == f"by {actor}":
            note = ""  # the actor is shown on its own
        entries.append(
            Entry(
                seq=event.seq,
                at=_moment(event.at),
                kind=event.kind,
                css="act" if actor else kind_class(event.kind),
                moved=moved(event),
                step=event.step or "",
                attempt="" if event.attempt is None else str(event.attempt),
                call=http_line(event),
                note=note,
                actor=str(actor) if actor else None,
                worker=event.worker or "",
                bodies=bodies,
            )
        )
    return entries


def bag_rows(checkout: Checkout, recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each bag as the checkout's cart had it, with what news recorded since (status, refunds):
    the news is newer when there is some."""
    news = {row["bag_id"]: row for row in recorded}
    rows = []
    for bag in checkout.bags:
        row = news.pop(bag.get("bag_id"), None) or {}
        rows.append(_bag(bag, row, checkout.currency))
    rows.extend(_bag({"bag_id": bag_id}, row, checkout.currency) for bag_id, row in news.items())
    return rows


def _bag(bag: dict[str, Any], news: dict[str, Any], currency: str) -> dict[str, Any]:
    currency = news.get("currency") or currency
    return {
        "bag_id": bag.get("bag_id"),
        "merchant": bag.get("merchant_name") or news.get("merchant_id") or bag.get("merchant_id"),
        "merchant_id": bag.get("merchant_id") or news.get("merchant_id"),
        "status": news.get("status") or bag.get("status") or "-",
        "financial_status": news.get("financial_status") or bag.get("financial_status") or "-",
        "fulfillment_status": news.get("fulfillment_status") or "-",
        "total": money(bag.get("total"), currency),
        "refunded": money(news["refunded_amount"], currency) if news.get("refunded_amount") else "",
        "canceled": money(news["canceled_amount"], currency) if news.get("canceled_amount") else "",
        "news_at": when(news.get("status_at")) if news else "",
    }
