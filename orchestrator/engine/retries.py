"""When a step that failed at Violet is tried again, and what its failure records.

A Violet error ends the checkout only when retrying cannot help. Otherwise the row is released,
due again after a jittered, capped backoff that is stored (never slept on), so any worker may
pick it up. An error after which Violet may have applied the request keeps the step in flight:
the next attempt reads Violet first. Our own credentials refused say nothing of the checkout, so
such a wait never uses up one of its attempts; nor does a rate budget: a 429, or a merchant's
budget with no turn for the call (store/budgets.py), defers the step for as long as the budget
asks, whatever its attempts.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any, TypeGuard

from orchestrator.engine.events import call_events, error_event
from orchestrator.engine.steps import error_summary
from orchestrator.store.records import CheckoutRow, Event
from orchestrator.violet import (
    CallRecord,
    VioletAuthError,
    VioletBudgetClosed,
    VioletError,
    VioletOutcomeUnknown,
    VioletRateLimited,
    VioletSendRefused,
)
from orchestrator.violet.ops import READ_OPS

log = logging.getLogger(__name__)

#: Statuses of a failed call that may nonetheless have been applied upstream (a gateway's answer).
_MAYBE_APPLIED_STATUSES = frozenset({500, 502, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; the delay is stored, never slept on."""

    max_attempts: int = 8
    base: float = 1.0
    cap: float = 300.0
    #: The longest Retry-After honoured: one 429 closes the throttle shared by every worker.
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        # Failed probes of an unknown outcome add to it without end: keep the exponent bounded.
        ceiling = min(self.cap, self.base * (2 ** min(max(attempt - 1, 0), 32)))
        delay = random.uniform(0, ceiling)
        return max(delay, min(retry_after or 0.0, self.max_retry_after))


@dataclass(frozen=True, slots=True)
class Retry:
    """A failed step's release: what it records, and in how many seconds it is due again."""

    events: list[Event]
    delay: float
    #: How long every worker holds off Violet (a 429 answered), or None.
    throttle: float | None = None


def refuses_credentials(exc: VioletError) -> TypeGuard[VioletAuthError]:
    """Violet refused our login: a configuration error, not the checkout's."""
    return isinstance(exc, VioletAuthError) and exc.credentials_refused


def ends_checkout(exc: VioletError, *, probing: bool) -> bool:
    """Whether retrying cannot help. A probe refused for our credentials says nothing of the
    order: Violet may hold it, so the step stays in flight and is read again later."""
    return exc.classification == "permanent" or (exc.classification == "auth" and not probing)


def failure(row: CheckoutRow, step: str, exc: VioletError, *, probing: bool) -> dict[str, Any]:
    """The error summary a failed call stores. Failed probes in a row back off further each
    time (they never use up the step's attempts: its outcome is still unknown, so it stays due);
    they are counted in the stored error, which any other outcome replaces."""
    error = error_summary(exc, step)
    if probing:
        error["probes"] = probe_failures(row, step) + 1
    return error


def retry_later(
    row: CheckoutRow,
    step: str,
    exc: VioletError,
    error: dict[str, Any],
    calls: list[CallRecord],
    policy: RetryPolicy,
    *,
    probing: bool,
) -> Retry:
    """Release the step to be tried again after a backoff (the row is updated for the write).

    When a reconcile probe failed (`probing`), the step's outcome is still unknown.
    """
    refused = isinstance(exc, VioletSendRefused)
    if refused:
        # Nothing was sent, but recovery may already have redone the step: it stays in
        # flight (the next worker reads Violet first), and the attempt does not count.
        log.warning("checkout %s: %s %s; left to reconcile", row.id, step, exc.message)
    events = call_events(calls, row)
    maybe_applied = isinstance(exc, VioletOutcomeUnknown) or (exc.status in _MAYBE_APPLIED_STATUSES)
    # An outcome we cannot know keeps the step in flight: the next attempt reconciles first.
    row.in_flight = row.in_flight and (maybe_applied or probing or refused)
    retry_after = _honoured_retry_after(row, exc, policy)
    throttle = None
    rate_limited = isinstance(exc, VioletRateLimited)
    if rate_limited:
        # Not a failure: due again once the budget has a turn (spread, so the checkouts
        # answered 429 together do not come back together), whatever the attempt count.
        wait = policy.base if retry_after is None else retry_after
        delay = min(wait * (1 + random.random()), policy.max_retry_after)
        throttle = min(max(delay, retry_after or 0.0), policy.max_retry_after)
    else:
        probes = int(error.get("probes") or 0)  # failed probes in a row back off further
        delay = policy.delay(row.attempt + probes, retry_after)
    row.last_error = error
    tried = row.attempt
    counted = not (refused or rate_limited)
    if refused or (rate_limited and not probing):
        row.attempt = max(row.attempt - 1, 0)
    events += [
        error_event(error, step, attempt=tried),
        _retry_event(row, step, tried, delay, attempt_counted=counted),
    ]
    row.step_no += 1
    return Retry(events, delay, throttle)


def wait_for_budget(
    row: CheckoutRow,
    step: str,
    exc: VioletBudgetClosed,
    calls: list[CallRecord],
    *,
    probing: bool,
    started: bool = True,
) -> Retry:
    """A merchant's budget had no turn for the call within the wait allowed: nothing was sent
    by it, and it is no failure (no error recorded, no attempt used). The step is due again
    once the budget has turns, spread over half as long again so deferred checkouts do not
    come back in a herd. A step that sent nothing but reads (a resumed submit reads the cart
    first) applied nothing: it is at rest again, so the next drive starts it afresh instead of
    reading it back and waiting out the settle window (seconds, for every deferral). A step
    refused its turn before its intent (`started` False) is at rest already, its attempt the
    one it was about to make."""
    tried = row.attempt if started else row.attempt + 1
    if started and not probing:
        row.in_flight = row.in_flight and any(call.op not in READ_OPS for call in calls)
        row.attempt = max(row.attempt - 1, 0)
    delay = exc.wait * (1 + 0.5 * random.random())
    event = _retry_event(row, step, tried, delay, attempt_counted=False)
    if event.detail is not None:
        event.detail["budget_wait_s"] = round(exc.wait, 3)
    row.step_no += 1
    return Retry([*call_events(calls, row), event], delay)


def wait_for_credentials(
    row: CheckoutRow,
    step: str,
    exc: VioletAuthError,
    calls: list[CallRecord],
    policy: RetryPolicy,
    *,
    probing: bool,
) -> Retry:
    """Violet refused our login: a configuration error, not this checkout's. Nothing of the
    step was applied (its request was not sent, or answered 401), so it waits, due again
    after the usual backoff, without using up the attempt; an in-flight step stays in flight.
    """
    error = error_summary(exc, step)
    tried = row.attempt
    if not probing:
        row.in_flight = False
        row.attempt = max(row.attempt - 1, 0)
    delay = policy.delay(max(row.attempt, 1))
    row.last_error = error
    events = [
        *call_events(calls, row),
        error_event(error, step, attempt=tried),
        _retry_event(row, step, tried, delay, attempt_counted=False),
    ]
    row.step_no += 1
    return Retry(events, delay)


def drop_refused_credentials(row: CheckoutRow) -> None:
    """A probe Violet answered: a stored credentials refusal is no longer true, so it goes (its
    audit event stays); any other stored error still says why the step is in flight."""
    if (row.last_error or {}).get("class") == "config":
        row.last_error = None


def probe_failures(row: CheckoutRow, step: str) -> int:
    """How many reconcile probes of `step` have failed in a row (from the stored error)."""
    last = row.last_error or {}
    return int(last.get("probes") or 0) if last.get("step") == step else 0


def _honoured_retry_after(row: CheckoutRow, exc: VioletError, policy: RetryPolicy) -> float | None:
    """A 429's Retry-After, cut to the longest the policy honours."""
    retry_after = exc.retry_after if isinstance(exc, VioletRateLimited) else None
    if retry_after is not None and retry_after > policy.max_retry_after:
        log.warning(
            "checkout %s: Violet asked to wait %s s (Retry-After); waiting %s s instead "
            "(ORCHESTRATOR_MAX_RETRY_AFTER)",
            row.id,
            f"{retry_after:.0f}",
            f"{policy.max_retry_after:g}",
        )
        return policy.max_retry_after
    return retry_after


def _retry_event(
    row: CheckoutRow, step: str, attempt: int, delay: float, *, attempt_counted: bool = True
) -> Event:
    detail: dict[str, Any] = {"delay_s": round(delay, 3), "reconcile_first": row.in_flight}
    if not attempt_counted:
        detail["attempt_counted"] = False
    return Event("retry_scheduled", step=step, attempt=attempt, detail=detail)
