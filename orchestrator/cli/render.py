"""Human output for the CLI: rich tables and colours on a terminal, plain aligned text in a pipe.

Plain text matters as much as colour: support staff grep and paste it, so when stdout is not a
terminal nothing here emits an ANSI code or a box-drawing character. Whatever is printed may come
from Violet (error messages, merchant names) through the database: control characters are shown
escaped (`\x1b`), never sent to the terminal, so such text cannot move the cursor, retitle the
window or hide itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator import states
from orchestrator.checkout import AuditEvent, Checkout, iso
from orchestrator.logs import printable

_ZERO_DECIMAL = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "HUF", "TWD", "UGX"})
_STATE_STYLE = {
    states.SUBMITTED: "bold green",
    states.FAILED: "bold red",
    states.CANCELED: "yellow",
    **{state: "cyan" for state in states.WAITING_STATES},
}
_KIND_STYLE = {
    "error": "red",
    "retry_scheduled": "yellow",
    "lease_taken_over": "magenta",
    "reconciled": "magenta",
    "transition": "bold",
}


class Output:
    """Where human output goes, and whether it may be decorated."""

    def __init__(self, file: TextIO | None = None) -> None:
        self.file = file or sys.stdout
        self.console = Console(file=self.file, highlight=False, soft_wrap=True)
        self.rich = self.console.is_terminal

    def line(self, text: str = "", style: str | None = None) -> None:
        text = printable(text)
        if self.rich and style:
            self.console.print(Text(text, style=style))
        else:
            self.file.write(text + "\n")
            self.file.flush()

    def json(self, document: Any) -> None:
        """One JSON document; never decorated (it is for machines)."""
        self.file.write(json.dumps(document, indent=2, default=str) + "\n")
        self.file.flush()

    def fields(self, rows: Sequence[tuple[str, str]]) -> None:
        """`label: value` lines, labels aligned."""
        rows = [(printable(k, newlines=False), printable(v, newlines=False)) for k, v in rows]
        width = max((len(label) for label, _ in rows), default=0)
        for label, value in rows:
            if self.rich:
                text = Text()
                text.append(f"{label + ':':<{width + 1}} ", style="dim")
                text.append(value, style=_STATE_STYLE.get(value, "") if label == "state" else "")
                self.console.print(text)
            else:
                self.line(f"{label + ':':<{width + 1}} {value}")

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        title: str | None = None,
        styles: Sequence[str | None] | None = None,
    ) -> None:
        """A table; `styles` gives an optional style per row (terminal only)."""
        rows = [[printable(cell, newlines=False) for cell in row] for row in rows]
        title = printable(title) if title else title
        if self.rich:
            table = Table(title=title, title_justify="left", header_style="bold")
            for column in columns:
                table.add_column(column, overflow="fold")
            for index, row in enumerate(rows):
                table.add_row(*row, style=styles[index] if styles else None)
            self.console.print(table)
            return
        if title:
            self.line(title)
        widths = [len(c) for c in columns]
        for row in rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
        for row in [list(columns), *rows]:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
            self.line("  ".join(cells).rstrip())


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
    return iso(value) or "-"


def _error_line(error: dict[str, Any] | None) -> str:
    if not error:
        return "-"
    parts = [str(error.get("class") or "?"), str(error.get("type") or "?")]
    if error.get("status") is not None:
        parts.append(f"HTTP {error['status']}")
    if error.get("step"):
        parts.append(f"at {error['step']}")
    message = error.get("message")
    return " / ".join(parts) + (f": {message}" if message else "")


def checkout_fields(checkout: Checkout) -> list[tuple[str, str]]:
    """Everything support asks about one checkout, in the order they ask it."""
    rows = [
        ("id", str(checkout.id)),
        ("app_order_id", checkout.app_order_id),
        ("violet_order_id", str(checkout.violet_order_id or "-")),
        ("state", checkout.state),
    ]
    if checkout.violet_status:
        rows.append(("violet_status", checkout.violet_status))
    if checkout.partially_accepted:
        rows.append(("note", "partially accepted: some bags were rejected by their merchant"))
    if checkout.unsettled_bags:
        rows.append(
            (
                "note",
                f"Violet took the order; bags {checkout.unsettled_bags} were not settled yet when "
                "it was recorded (`orchestrator verify` reports them if they end rejected)",
            )
        )
    rows += [
        ("payment", checkout.payment_kind),
        ("total", money(checkout.total, checkout.currency)),
    ]
    if checkout.total is not None:
        detail = ", ".join(
            f"{name} {money(getattr(checkout, name + '_total'), checkout.currency)}"
            for name in ("sub", "shipping", "tax", "discount")
        )
        rows.append(("totals", detail))
    for bag in checkout.bags:
        merchant = bag.get("merchant_name") or bag.get("merchant_id")
        rows.append(
            (
                f"bag {bag.get('bag_id')}",
                f"merchant {merchant}: {bag.get('status') or '-'}"
                f" ({bag.get('financial_status') or '-'})",
            )
        )
    rows += [
        ("pending_step", checkout.pending_step or "-"),
        ("attempt", str(checkout.attempt)),
        ("next_attempt_at", when(checkout.next_attempt_at)),
    ]
    if checkout.lease_owner:
        rows.append(("lease_owner", checkout.lease_owner))
    if checkout.waiting_reason:
        rows.append(("waiting_for", checkout.waiting_reason))
    rows += [
        ("last_error", _error_line(checkout.last_error)),
        ("created_at", when(checkout.created_at)),
        ("updated_at", when(checkout.updated_at)),
        ("finished_at", when(checkout.finished_at)),
    ]
    return rows


def show_checkout(out: Output, checkout: Checkout) -> None:
    out.fields(checkout_fields(checkout))


TIMELINE_COLUMNS = ("time", "event", "from -> to", "step", "try", "http", "error")


def _http(event: AuditEvent) -> str:
    if not event.http_method and event.http_status is None:
        return ""
    latency = f" {event.latency_ms:.0f}ms" if event.latency_ms is not None else ""
    status = event.http_status if event.http_status is not None else "no answer"
    return f"{event.http_method or ''} {event.http_path or ''} -> {status}{latency}".strip()


def bag_move(bag_id: Any, old: Any, new: Any, fulfillment: Any = None) -> str:
    """`bag 1 ACCEPTED -> COMPLETED/SHIPPED`; first news of a bag shows its status alone."""
    to = f"{new}/{fulfillment}" if fulfillment else str(new)
    return f"bag {bag_id} {old} -> {to}" if old else f"bag {bag_id} {to}"


def _bag_news(detail: dict[str, Any]) -> str:
    """The bags a webhook or read-back moved, e.g. `ORDER_COMPLETED: bag 1 ACCEPTED -> ...`."""
    moved = [
        bag_move(b.get("bag_id"), b.get("from"), b.get("to"), b.get("fulfillment_status"))
        for b in detail.get("bags") or ()
        if b.get("from") != b.get("to")
    ]
    head = detail.get("event_type") or detail.get("via") or ""
    return f"{head}: {', '.join(moved) or 'no bag moved'}".lstrip(": ")


def _after_submit(event: AuditEvent) -> str | None:
    """The detail line of an event of a checkout's life after submit (None: not one)."""
    detail = event.detail or {}
    if event.kind in ("webhook_applied", "bag_read_back"):
        return _bag_news(detail)
    if event.kind.startswith("bag_action_"):
        state = f": {detail['state']}" if "state" in detail else ""
        return f"{detail.get('kind')} of bag {detail.get('bag_id')} by {detail.get('actor')}{state}"
    return None


def _event_error(event: AuditEvent) -> str:
    if not (event.error_class or event.error_type or event.error_message):
        late = _after_submit(event)
        if late is not None:
            return late
        if event.kind in ("lease_taken_over", "reconciled", "retry_scheduled") and event.detail:
            return ", ".join(f"{k}={v}" for k, v in event.detail.items())
        if event.kind == "waiting" and event.detail:
            return f"reason={event.detail.get('reason')}"
        if event.kind == "transition" and (event.detail or {}).get("partial"):
            detail = event.detail or {}
            return f"partial: accepted bags {detail.get('accepted_bags')}, rejected " + str(
                detail.get("rejected_bags")
            )
        return ""
    head = "/".join(filter(None, [event.error_class, event.error_type]))
    return f"{head}: {event.error_message}" if event.error_message else head


def timeline_rows(events: Sequence[AuditEvent]) -> list[list[str]]:
    rows = []
    for event in events:
        moved = ""
        if event.from_state or event.to_state:
            moved = f"{event.from_state or ''} -> {event.to_state or ''}"
        rows.append(
            [
                when(event.at),
                event.kind,
                moved,
                event.step or "",
                "" if event.attempt is None else str(event.attempt),
                _http(event),
                _event_error(event),
            ]
        )
    return rows


def show_timeline(out: Output, events: Sequence[AuditEvent], *, title: str | None = None) -> None:
    out.table(
        TIMELINE_COLUMNS,
        timeline_rows(events),
        title=title,
        styles=[_KIND_STYLE.get(e.kind) for e in events],
    )


def show_list(out: Output, checkouts: Sequence[Checkout]) -> None:
    rows = [
        [
            when(c.created_at),
            str(c.id),
            c.app_order_id,
            str(c.violet_order_id or "-"),
            c.state,
            money(c.total, c.currency),
            c.pending_step or "-",
            (c.last_error or {}).get("type") or "-",
        ]
        for c in checkouts
    ]
    out.table(
        ("created", "id", "app_order_id", "violet", "state", "total", "pending", "error"),
        rows,
        styles=[_STATE_STYLE.get(c.state) for c in checkouts],
    )
