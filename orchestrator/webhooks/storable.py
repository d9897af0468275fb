"""A verified webhook body made storable in PostgreSQL's jsonb, or recorded as refused.

Violet signs bytes, and JSON read from them may hold what jsonb cannot: `\\u0000` in a string, a
lone UTF-16 surrogate (`\\ud800`), `NaN`, `Infinity`, a number beyond a double (`1e999`). Such an
event is still Violet's, and answering 503 would only make Violet deliver it again, ten times,
then drop it (and pause a webhook that fails often, losing every other event with it). So:

- `sanitized` replaces each such value (U+FFFD for a character, null for a number) and notes,
  under `NOTE_KEY`, how many it replaced and the SHA-256 of the body as signed: the event is
  stored and applied as usual (ids and statuses are plain values), and the stored row can be
  matched with Violet's delivery logs. A body that needs nothing is returned as it is.
- `refusal`: the database refused a body anyway, for a reason nothing here foresaw. The event
  is stored `ignored`, its body replaced by the hash and the database's reason: visible in the
  inbox, answered 200, never applied.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from typing import Any, Final

import psycopg

from orchestrator.store import database
from orchestrator.store.inbox import IGNORED, InboxEvent

#: Where a stored body notes what was changed to store it (absent: stored as received).
NOTE_KEY: Final = "_orchestrator_stored_as"
REPLACEMENT: Final = "\ufffd"
_UNSTORABLE_TEXT: Final = re.compile("[\x00\ud800-\udfff]")
# A database refusing the value itself (class 22 data exceptions, 54 program limits such as
# nesting too deep, the tripwire's 23T03), as opposed to being unreachable, busy or timed out.
_REFUSED_CLASSES: Final = ("22", "54")
_TRIPWIRE: Final = "23T03"


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _needs_care(body: Any) -> bool:
    """Whether the body holds a value jsonb cannot (a fast check in C; rarely true)."""
    try:
        text = json.dumps(body, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except (ValueError, RecursionError):  # NaN or infinity; a lone surrogate (UnicodeError)
        return True
    return "\\u0000" in text


def _clean(value: Any, replaced: list[int]) -> Any:
    if isinstance(value, str):
        cleaned, count = _UNSTORABLE_TEXT.subn(REPLACEMENT, value)
        replaced[0] += count
        return cleaned
    if isinstance(value, float) and not math.isfinite(value):
        replaced[0] += 1
        return None
    if isinstance(value, list):
        return [_clean(item, replaced) for item in value]
    if isinstance(value, dict):
        return {_clean(key, replaced): _clean(item, replaced) for key, item in value.items()}
    return value


def sanitized(event: InboxEvent, raw: bytes) -> InboxEvent:
    """`event` with a body jsonb can hold (see the module docstring); RecursionError for a body
    nested too deep to walk (the caller records it as refused)."""
    if not _needs_care(event.body):
        return event
    replaced = [0]
    body = _clean(event.body, replaced)
    if replaced[0] == 0:
        return event
    note = {"sha256": digest(raw), "replaced": replaced[0]}
    body = {**body, NOTE_KEY: note} if isinstance(body, dict) else {NOTE_KEY: note, "body": body}
    return dataclasses.replace(event, body=body)


def refused_by_database(exc: BaseException) -> bool:
    """Whether the database refused the row's values (it never will take them), rather than
    failing us (down, busy, timed out: answered 503, Violet delivers again)."""
    if isinstance(exc, psycopg.DataError):  # class 22, or refused before it left (a NUL byte)
        return True
    state = (exc.sqlstate if isinstance(exc, psycopg.Error) else None) or ""
    return state == _TRIPWIRE or state.startswith(_REFUSED_CLASSES)


def refusal(event: InboxEvent, raw: bytes, why: str) -> InboxEvent:
    """The row that records an event whose body cannot be stored: `ignored`, with the body's
    hash and size and `why` instead of the body."""
    reason = f"body not stored: {why}"
    body = {NOTE_KEY: {"sha256": digest(raw), "bytes": len(raw), "refused": reason}}
    return dataclasses.replace(event, body=body, state=IGNORED, reason=reason)


def database_reason(exc: BaseException) -> str:
    """The database's reason in a line (its SQLSTATE and message's first line)."""
    state = getattr(exc, "sqlstate", None)
    return f"the database refuses it ({state}: {database.error_reason(exc)})"[:300]
