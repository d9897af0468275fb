"""What a step write keeps when the database's tripwire refuses its text: the outcome, no text.

The runner's writes carry redacted summaries; if one still holds something the tripwire refuses
(SQLSTATE 23T03), losing the write would lose the outcome it records (a submitted order recorded
as in flight, then as failed). So the write is made again with every guarded value reduced to
what cannot be a secret (keys, numbers, booleans and word-like codes such as states and error
types), the rest replaced by a marker naming the finding. State, ids, totals and event kinds
are columns the tripwire does not guard, and are written unchanged.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

from orchestrator import sensitive
from orchestrator.store.schema import SQLSTATE_TRIPWIRE

__all__ = ["WITHHELD", "marker", "tripwire_finding", "withhold_write"]

WITHHELD: Final = "[WITHHELD]"
# A word-like code (a state, a step, an error type): letters and underscores, no digits (no card
# number), no colon (no header line) and no "secret" (no client secret).
_CODE_RE: Final = re.compile("[A-Za-z][A-Za-z_]{0,63}")
_NAME_RE: Final = re.compile("[A-Za-z][A-Za-z0-9_]{0,63}")
_FINDING_RE: Final = re.compile("^tripwire: (?P<column>[a-z_.]+) holds (?P<finding>.*?); store ")
# The columns of a step write the tripwire guards.
_JSON_EVENT_FIELDS: Final = ("request_body", "response_body", "detail")


def tripwire_finding(exc: BaseException) -> str | None:
    """`column held finding` when `exc` is the tripwire's refusal (psycopg's error, or
    SQLAlchemy's wrapping it); None for any other error."""
    error: Any = exc
    if getattr(error, "sqlstate", None) != SQLSTATE_TRIPWIRE:
        error = getattr(exc, "orig", None)
        if getattr(error, "sqlstate", None) != SQLSTATE_TRIPWIRE:
            return None
    primary = getattr(getattr(error, "diag", None), "message_primary", None) or ""
    match = _FINDING_RE.match(primary)
    if match is None:
        return "a value the tripwire refused"
    return f"{match['column']} held {match['finding']}"


def marker(finding: str | None) -> str:
    """The text that stands where a value was withheld, naming the finding when that is safe."""
    if finding is None:
        return WITHHELD
    text = f"[WITHHELD: {sensitive.redact_text(finding)[:200]}]"
    return text if sensitive.find_in_text(text) is None else WITHHELD


def _is_code(value: str) -> bool:
    return _CODE_RE.fullmatch(value) is not None and "secret" not in value.lower()


def _is_name(key: str) -> bool:
    """A key kept as it is: a plain name with at most 4 digits (`address_1`, `bag_id`)."""
    return (
        _NAME_RE.fullmatch(key) is not None
        and sum(ch.isdigit() for ch in key) <= 4
        and "secret" not in key.lower()
    )


def withhold_json(value: Any, mark: str) -> Any:
    """`value` with every string that is not a word-like code replaced by `mark`, numbers that
    could be a card number too; keys the tripwire guards keep only ``[REDACTED]``."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if not _is_name(name):
                continue  # a key that is not a plain name may be the secret itself
            if sensitive.key_rule(name) is not None:
                out[name] = None if item is None else sensitive.REDACTED
            else:
                out[name] = withhold_json(item, mark)
        return out
    if isinstance(value, list | tuple):
        return [withhold_json(item, mark) for item in value]
    if isinstance(value, str):
        return value if _is_code(value) else mark
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) < 10**12 else mark
    if isinstance(value, float):
        short = math.isfinite(value) and abs(value) < 10**6 and value == round(value, 3)
        return value if short else mark
    return mark


def withhold_write(write: dict[str, Any], finding: str | None) -> dict[str, Any]:
    """A copy of a step write (repository.py's dict) with its guarded values withheld: the
    row's `bags` and `last_error`, each event's bodies, detail and error message. Everything
    else (state, ids, totals, seqs) is the same."""
    mark = marker(finding)
    out = dict(write)
    out["bags"] = withhold_json(write["bags"], mark)
    if write["last_error"] is not None:
        out["last_error"] = withhold_json(write["last_error"], mark)
        if "message" in write["last_error"]:
            out["last_error"]["message"] = mark
    events = []
    for event in write["events"]:
        copy = dict(event)
        for field in _JSON_EVENT_FIELDS:
            if copy.get(field) is not None:
                copy[field] = withhold_json(copy[field], mark)
        if copy.get("error_message") is not None:
            copy["error_message"] = mark
        events.append(copy)
    out["events"] = events
    return out
