"""What a recovery run reports: its `RecoverySummary`, and how each drive is counted in it."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator import states
from orchestrator.store.records import CheckoutRow

__all__ = ["RecoverySummary", "Unfinished", "count_outcome"]


@dataclass(slots=True)
class RecoverySummary:
    """What one run did; every claimed checkout is counted once under its outcome."""

    claimed: int = 0
    taken_over: int = 0
    advanced: int = 0
    submitted: int = 0
    failed: int = 0
    canceled: int = 0
    waiting: int = 0
    reconciled: int = 0
    retry_scheduled: int = 0
    #: Drives that raised (each time, a lease conflict with another worker included).
    errors: int = 0
    #: Checkouts whose last drive in this run raised a bug (not a lease conflict, not a database
    #: error): left for the next run. One the same run later drove without error is not counted.
    drive_errors: int = 0
    #: Checkouts whose last drive in this run a database error interrupted (kept, never failed,
    #: left for the next run); counted like `drive_errors`.
    database_errors: int = 0
    #: Checkouts kept waiting because Violet refused our credentials (the run stopped claiming).
    credentials_refused: int = 0
    still_due: int = 0
    #: Webhook events settled (applied, ignored, failed) and left pending (checkout busy).
    webhooks_applied: int = 0
    webhooks_ignored: int = 0
    webhooks_failed: int = 0
    webhooks_retried: int = 0
    #: Cancels and refunds settled by reading their order (their answer or news never came).
    actions_settled: int = 0
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration_s"] = round(self.duration_s, 3)
        return data

    def line(self) -> str:
        """One-line JSON, as printed by `orchestrator recover --json`."""
        return json.dumps(self.to_json(), separators=(",", ":"))


class Unfinished:
    """The checkouts whose last drive in a run raised, kept in the run's summary counters: a
    checkout the same run drives again without error is no longer counted."""

    def __init__(self) -> None:
        self._raised: dict[uuid.UUID, bool] = {}  # checkout -> it was a database error

    def raised(self, row: CheckoutRow, summary: RecoverySummary, *, database_error: bool) -> None:
        self._raised[row.id] = database_error
        self._count(summary)

    def settled(self, row: CheckoutRow, summary: RecoverySummary) -> None:
        if self._raised.pop(row.id, None) is not None:
            self._count(summary)

    def _count(self, summary: RecoverySummary) -> None:
        summary.database_errors = sum(self._raised.values())
        summary.drive_errors = len(self._raised) - summary.database_errors


def count_outcome(
    row: CheckoutRow, summary: RecoverySummary, *, before: str, reconciling: bool
) -> None:
    """Count a drive that ended without raising under where it left the checkout."""
    if reconciling and not _poisoned(row):
        summary.reconciled += 1
    if row.state != before:
        summary.advanced += 1
    if row.state == states.SUBMITTED:
        summary.submitted += 1
    elif row.state == states.FAILED:
        summary.failed += 1
    elif row.state == states.CANCELED:
        summary.canceled += 1
    elif row.pending_step is None:
        summary.waiting += 1
    else:
        summary.retry_scheduled += 1


def _poisoned(row: CheckoutRow) -> bool:
    return row.state == states.FAILED and (row.last_error or {}).get("type") == "poison"
