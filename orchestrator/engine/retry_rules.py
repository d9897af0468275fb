"""Which failed checkouts an operator may retry, and why the others may not: one pure rule.

A retry helps when the failure was ours or the road's: a step that used up its attempts against
an unreachable or erring Violet (`retries_exhausted`), a checkout its workers kept dying on
(`poison`), our own configuration or credentials (`config`, `auth`), a fault in this program
(`internal`), Violet unreachable or its answer lost (`retryable`, `outcome_unknown`). It cannot
help when Violet (or the request itself) said no for good: a declined card, an item out of stock,
a rejected submit, a request Violet refused as invalid (`permanent`). The reopened checkout reads
Violet before it redoes anything, so a retry is safe wherever it is allowed; the refusal keeps
an operator from hammering Violet with what it already refused.

What each failure leaves in `last_error` (engine/retries.py, decisions.py, events.py): the class
and type of the error that ended it, and for a step that used up its attempts or a poisoned
checkout the class `permanent` with the type `retries_exhausted` or `poison`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from orchestrator import states
from orchestrator.store.records import Failure
from orchestrator.violet.errors import CARD_DECLINED

#: Failures of ours or of the road, whatever their class (both are stored as `permanent`).
RETRYABLE_TYPES: Final = frozenset({"retries_exhausted", "poison"})
#: Error classes that are not Violet's word on the order.
RETRYABLE_CLASSES: Final = frozenset({"config", "auth", "internal", "retryable", "outcome_unknown"})
#: How much of a stored error message a refusal quotes.
_QUOTED = 160


def refusal(
    state: str, last_error: Mapping[str, Any] | None, failure: Failure | None
) -> str | None:
    """Why a checkout in `state`, with `last_error` and its `failure` read from the audit trail,
    may not be retried; None when it may (it then reopens in `failure.state` at `failure.step`)."""
    why = error_refusal(state, last_error)
    if why is not None:
        return why
    if failure is None:
        return "its audit trail records no failure to reopen; start a new checkout"
    if not states.reopens_in(failure.state) or failure.step is None:
        return (
            f"it failed in state {failure.state} with no step pending, where no retry "
            "reopens it; start a new checkout"
        )
    return None


def error_refusal(state: str, last_error: Mapping[str, Any] | None) -> str | None:
    """The part of `refusal` a checkout's row decides alone (its state and stored error): what a
    page may ask before offering a retry; the audit trail is read only when one is asked."""
    if state != states.FAILED:
        return _not_failed(state)
    error = last_error or {}
    kind, cls = error.get("type"), error.get("class")
    if kind not in RETRYABLE_TYPES and cls not in RETRYABLE_CLASSES:
        return _final(error)
    return None


def _not_failed(state: str) -> str:
    if state == states.SUBMITTED:
        return "it is submitted: Violet holds the order; there is nothing to retry"
    if state == states.CANCELED:
        return "it was canceled; a canceled checkout stays canceled: start a new checkout"
    if state in states.WAITING_STATES:
        return f"it is {state}, waiting for input, not failed; there is nothing to retry"
    return (
        f"it is {state}, not failed: it is still being worked on (`orchestrator checkout run` "
        "or the recovery job drives it)"
    )


def _final(error: Mapping[str, Any]) -> str:
    """The refusal of a failure that is final: what was refused, and what to do instead."""
    kind, cls, step = error.get("type"), error.get("class"), error.get("step")
    if not error:
        return "no error was recorded with its failure, so it is not known to be operational"
    if kind == CARD_DECLINED:
        code = error.get("decline_code")
        why = f"{CARD_DECLINED}: {code}" if code and code != CARD_DECLINED else CARD_DECLINED
        return f"the card was declined ({why}): Violet's final word; start a new checkout"
    if cls != "permanent":
        return f"its error class {cls!r} is not known to be operational ({kind})"
    message = str(error.get("message") or "")[:_QUOTED]
    quoted = f" {message!r}" if message else ""
    if error.get("status") is None:
        return f"the request cannot succeed at {step} ({kind}){quoted}: start a new checkout"
    what = "rejected the submit" if step == states.SUBMIT else f"refused {step}"
    return f"Violet {what} ({kind}){quoted}: Violet's final word; start a new checkout"
