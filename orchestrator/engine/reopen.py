"""An operator's retry: a failed checkout reopened where it failed, reading Violet first.

The rule of which failures may be retried is `retry_rules.refusal`. A retry allowed by it is one
statement (store/checkout_sql.py `REOPEN_SQL`), taken only if the row is still as it was judged
and no live worker holds its lease: the failed row goes back to the state it failed from, with
the failed step pending *in flight*, attempts counted from zero and the crash count cleared, due
now, under a new lease epoch, with a `retried` event (actor, reason) and its `transition`, and a
`checkout_reopened` change for the host. Being in flight, the step's reconcile rule runs before
anything is sent (design §3): a submit Violet already took is recorded as submitted and never
sent again, a cart Violet already made for the app_order_id is adopted and never made again, and
a card payment whose card is gone waits in `awaiting_payment` for it, as after a crash. The
step's start is kept, so a request of the failed run that may still be running at Violet is
waited out (the settle window) before it is redone.

With `leased`, the retrying process holds the new lease and drives the checkout itself; without,
the checkout is left due now for whoever claims it (the recovery job). The database refuses any
other change of a failed row, a reopen elsewhere than where it failed included (migration 0011).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from orchestrator import states
from orchestrator.checkout import RetryCandidate, RetryReport
from orchestrator.engine import machine
from orchestrator.engine.action_rules import text_problem
from orchestrator.engine.retry_rules import refusal
from orchestrator.engine.worker import Worker
from orchestrator.errors import CheckoutBusy, CheckoutNotFound, InvalidRequest, RetryRefused
from orchestrator.store.records import CheckoutRow, Event, Failure

__all__ = ["MAX_ACTOR", "MAX_LIMIT", "MAX_REASON", "retry", "retry_many"]

MAX_ACTOR: Final = 200
MAX_REASON: Final = 500
MAX_LIMIT: Final = 10_000
#: How many times a retry judges the row again when it moved between the read and the reopen.
_TRIES: Final = 3


def check_note(actor: str, reason: str | None) -> None:
    """Refuse an actor or reason that cannot be recorded (InvalidRequest names the field)."""
    bad: list[tuple[str, str]] = []
    if not actor.strip():
        bad.append(("actor", "required: who retries (support reads it)"))
    elif (why := text_problem(actor, MAX_ACTOR)) is not None:
        bad.append(("actor", why))
    if reason is not None and (why := text_problem(reason, MAX_REASON)) is not None:
        bad.append(("reason", why))
    if bad:
        raise InvalidRequest(bad)


async def retry(
    worker: Worker, row: CheckoutRow, *, actor: str, reason: str | None, leased: bool
) -> CheckoutRow:
    """Reopen the failed checkout `row` where it failed; RetryRefused (nothing changed) when its
    failure is final or it is not failed, CheckoutBusy when a live worker holds it.

    Returns the reopened row: leased by `worker` when `leased` (drive it), else due now.
    """
    check_note(actor, reason)
    for _ in range(_TRIES):
        failure = await worker.repo.last_failure(row.id)
        why = refusal(row.state, row.last_error, failure)
        if why is not None:
            raise RetryRefused(f"checkout {row.app_order_id} is not retried: {why}")
        assert failure is not None and failure.step is not None  # `refusal` said so
        with machine.attached(row.state) as model:
            machine.reopen(model, failure.state)  # the graph's word, before the database's
        reopened = await worker.repo.reopen(
            row,
            failure,
            _events(row, failure, actor, reason),
            change=_change(row, failure, actor),
            worker=worker.id,
            lease_seconds=worker.lease_seconds,
            leased=leased,
        )
        if reopened is not None:
            return reopened
        current = await worker.repo.get(row.id)
        if current is None:  # checkouts are never deleted
            raise CheckoutNotFound(f"no checkout with id {row.id}")
        if current.state == states.FAILED and current.lease_owner is not None:
            raise CheckoutBusy(
                f"checkout {row.app_order_id} is leased by {current.lease_owner} (its news after "
                "failure is being recorded); retry it again shortly"
            )
        row = current  # it moved (another retry, say): judged again as it is now
    raise CheckoutBusy(f"checkout {row.app_order_id} kept changing; retry it again shortly")


def _events(row: CheckoutRow, failure: Failure, actor: str, reason: str | None) -> list[Event]:
    error = row.last_error or {}
    detail: dict[str, Any] = {
        "actor": actor,
        "error": {"class": error.get("class"), "type": error.get("type")},
        "reconcile_first": True,
    }
    if reason is not None:
        detail["reason"] = reason
    return [
        Event(
            "retried",
            from_state=row.state,
            to_state=failure.state,
            step=failure.step,
            attempt=0,
            detail=detail,
        ),
        Event("transition", from_state=row.state, to_state=failure.state, step=states.RETRY),
    ]


def _change(row: CheckoutRow, failure: Failure, actor: str) -> dict[str, Any]:
    return {
        "state": failure.state,
        "step": failure.step,
        "actor": actor,
        "error_type": (row.last_error or {}).get("type"),
    }


async def retry_many(
    worker: Worker,
    *,
    error_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    dry_run: bool = False,
    actor: str,
    reason: str | None = None,
) -> RetryReport:
    """Judge every failed checkout the filters select (newest first, at most `limit`) and, unless
    `dry_run`, reopen each one the rule allows, due now for the recovery job. One refused at its
    reopen (it moved, or is leased) is reported refused with why; the others go on."""
    check_note(actor, reason)
    _check_filters(since=since, until=until, limit=limit)
    found = await worker.repo.failed_with_failures(
        error_type=error_type, since=since, until=until, limit=limit
    )
    retried: list[RetryCandidate] = []
    refused: list[RetryCandidate] = []
    for row, failure in found:
        candidate = _candidate(row, failure, refusal(row.state, row.last_error, failure))
        if candidate.refused is None and not dry_run:
            try:
                await retry(worker, row, actor=actor, reason=reason, leased=False)
            except (RetryRefused, CheckoutBusy) as exc:
                candidate = _candidate(row, failure, str(exc))
        (refused if candidate.refused is not None else retried).append(candidate)
    return RetryReport(dry_run=dry_run, retried=tuple(retried), refused=tuple(refused))


def _candidate(row: CheckoutRow, failure: Failure | None, why: str | None) -> RetryCandidate:
    error = row.last_error or {}
    return RetryCandidate(
        id=row.id,
        app_order_id=row.app_order_id,
        error_class=error.get("class"),
        error_type=error.get("type"),
        failed_in=failure.state if failure is not None else None,
        step=failure.step if failure is not None else None,
        refused=why,
    )


def _check_filters(*, since: datetime | None, until: datetime | None, limit: int) -> None:
    problems: list[tuple[str, str]] = []
    if not 1 <= limit <= MAX_LIMIT:
        problems.append(("limit", f"must be between 1 and {MAX_LIMIT}"))
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            problems.append((name, "must carry a time zone (e.g. 2024-05-01T00:00:00Z)"))
    if problems:
        raise InvalidRequest(problems)
