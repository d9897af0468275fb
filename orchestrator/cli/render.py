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
from datetime import UTC
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator import states
from orchestrator.checkout import AuditEvent, Checkout
from orchestrator.describe import (  # `money`, `when` and `bag_move` are used from here too
    bag_move,
    error_line,
    event_note,
    http_line,
    money,
    moved,
    when,
)
from orchestrator.logs import printable

__all__ = [
    "TIMELINE_COLUMNS",
    "Output",
    "bag_move",
    "checkout_fields",
    "money",
    "show_checkout",
    "show_list",
    "show_timeline",
    "timeline_rows",
    "when",
]
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
        ("last_error", error_line(checkout.last_error)),
        ("created_at", when(checkout.created_at)),
        ("updated_at", when(checkout.updated_at)),
        ("finished_at", when(checkout.finished_at)),
    ]
    return rows


def show_checkout(out: Output, checkout: Checkout) -> None:
    out.fields(checkout_fields(checkout))


TIMELINE_COLUMNS = ("time", "event", "from -> to", "step", "try", "http", "error")


def timeline_rows(events: Sequence[AuditEvent]) -> list[list[str]]:
    rows = []
    for event in events:
        rows.append(
            [
                when(event.at),
                event.kind,
                moved(event),
                event.step or "",
                "" if event.attempt is None else str(event.attempt),
                http_line(event),
                event_note(event),
            ]
        )
    return rows


def pruned_note(events: Sequence[AuditEvent]) -> str | None:
    """One line saying which events retention stripped, and when (None: none was)."""
    days: dict[str, int] = {}
    for event in events:
        if event.pruned_at is not None:
            day = event.pruned_at.astimezone(UTC).date().isoformat()
            days[day] = days.get(day, 0) + 1
    if not days:
        return None
    when_pruned = ", ".join(f"{n} on {day}" for day, n in sorted(days.items()))
    return (
        f"bodies pruned (retention): {when_pruned}; their Violet request/response summaries and"
        " long detail values are gone, the rest of each event is kept"
    )


def show_timeline(out: Output, events: Sequence[AuditEvent], *, title: str | None = None) -> None:
    out.table(
        TIMELINE_COLUMNS,
        timeline_rows(events),
        title=title,
        styles=[_KIND_STYLE.get(e.kind) for e in events],
    )
    note = pruned_note(events)
    if note is not None:
        out.line(note, style="dim")


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
