"""The checkout list's filter, as read from a page's query string and written back into links.

One object carries what the operator chose (state, error type, merchant, creation time range,
waiting for input, stuck in flight, unfinished), so the list, its next page and a bulk action's
dry run all ask the same question. Bad values raise `InvalidRequest` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode

from orchestrator import states
from orchestrator.audit import Cursor, SettleWindow
from orchestrator.errors import InvalidRequest

__all__ = ["ListFilter", "parse_time"]

_AGE: Final = re.compile(r"^(\d{1,6})\s*([mhdw])$")
_AGE_UNITS: Final = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MAX_TEXT: Final = 200
_CHECKED: Final = frozenset({"1", "on", "true", "yes"})


def parse_time(value: str, field: str, *, now: datetime | None = None) -> datetime:
    """An ISO-8601 time (no zone: UTC, what the page's date inputs send) or an age back from
    now (`30m`, `24h`, `7d`, `2w`)."""
    text = value.strip()
    age = _AGE.match(text.lower())
    if age:
        seconds = int(age.group(1)) * _AGE_UNITS[age.group(2)]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            [(field, "a time (2024-05-01T12:00, UTC unless it says otherwise) or an age (24h)")]
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ListFilter:
    """What the list shows; the text the operator typed is kept to be shown back unchanged."""

    state: str | None = None
    error_type: str | None = None
    merchant: str | None = None
    since: str | None = None
    until: str | None = None
    waiting: bool = False
    stuck: bool = False
    unfinished: bool = False

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ListFilter:
        """The filter in a query string (unknown parameters are ignored); InvalidRequest names
        each bad field."""
        found = cls(
            state=_text(query, "state"),
            error_type=_text(query, "error_type"),
            merchant=_text(query, "merchant"),
            since=_text(query, "since"),
            until=_text(query, "until"),
            waiting=query.get("waiting", "").lower() in _CHECKED,
            stuck=query.get("stuck", "").lower() in _CHECKED,
            unfinished=query.get("unfinished", "").lower() in _CHECKED,
        )
        found.check()
        return found

    def check(self) -> None:
        problems: list[tuple[str, str]] = []
        for name in ("state", "error_type", "merchant", "since", "until"):
            value = getattr(self, name)
            if value is not None and len(value) > _MAX_TEXT:
                problems.append((name, f"at most {_MAX_TEXT} characters"))
        if self.state is not None and self.state not in states.STATES:
            problems.append(("state", f"one of {', '.join(states.STATES)}"))
        if self.merchant is not None and not (
            self.merchant.isascii() and self.merchant.isdigit() and len(self.merchant) <= 18
        ):
            problems.append(("merchant", "a Violet merchant id (digits)"))
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and len(value) <= _MAX_TEXT:
                try:
                    parse_time(value, name)
                except InvalidRequest as exc:
                    problems.extend(exc.fields)
        if problems:
            raise InvalidRequest(problems)

    @property
    def is_empty(self) -> bool:
        return self == ListFilter()

    def audit_filters(self, window: SettleWindow, *, now: datetime | None = None) -> dict[str, Any]:
        """`audit.list_checkouts` keyword arguments for this filter."""
        return {
            "state": self.state,
            "error_type": self.error_type,
            "merchant_id": int(self.merchant) if self.merchant else None,
            "since": parse_time(self.since, "since", now=now) if self.since else None,
            "until": parse_time(self.until, "until", now=now) if self.until else None,
            "waiting": self.waiting,
            "stuck": window if self.stuck else None,
            "unfinished": self.unfinished,
        }

    def with_(self, **changes: Any) -> ListFilter:
        return replace(self, **changes)

    def params(self) -> dict[str, str]:
        """The filter as query parameters (empty ones left out)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is True:
                out[f.name] = "1"
            elif isinstance(value, str):
                out[f.name] = value
        return out

    def query(self, *, after: Cursor | None = None) -> str:
        """`?state=failed&...` (with a page cursor), or an empty string."""
        params = self.params()
        if after is not None:
            params["after"] = after.token()
        return "?" + urlencode(params) if params else ""


def _text(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name, "").strip()
    return value or None
