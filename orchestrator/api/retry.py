"""An operator's retry of failed checkouts at the front door (the work is engine/reopen.py).

A mixin, like a bag's cancel and refund: `Orchestrator` gains `retry` and `retry_many` with
their public signatures and docstrings kept here. A retry reopens a failed checkout at the step
that failed and reads Violet before redoing anything (docs/operations.md, "Retry").
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from orchestrator.checkout import Checkout, RetryReport

if TYPE_CHECKING:
    from orchestrator.engine.worker import Worker
    from orchestrator.store.records import CheckoutRow

__all__ = ["DEFAULT_ACTOR", "RetryCommands"]

#: Who retried, when the caller does not say.
DEFAULT_ACTOR = "library"


class RetryCommands:
    """`retry` and `retry_many` for a class with a worker and a drive (`Orchestrator`).

    The engine's retry is imported on call: a caller that never retries does not load it.
    """

    if TYPE_CHECKING:

        @property
        def worker(self) -> Worker: ...

        async def _row(self, ref: uuid.UUID | str) -> CheckoutRow: ...

        async def drive_claimed(self, row: CheckoutRow, *, intent_committed: bool) -> Checkout: ...

    async def retry(
        self,
        ref: uuid.UUID | str,
        *,
        actor: str | None = None,
        reason: str | None = None,
        run: bool = True,
    ) -> Checkout:
        """Reopen a failed checkout whose failure was operational (retries exhausted, poison, our
        configuration or credentials, Violet unreachable) at the step that failed, recording
        `actor` (default "library") and `reason`; then (by default) drive it: the step's
        reconcile reads Violet first, so an order Violet holds is recorded, never submitted
        again, and a cart it made is adopted, never made again. With ``run=False`` it is left
        due now for the recovery job. `RetryRefused` (nothing changed) for a failure that is
        Violet's final word (a declined card, a rejected submit) or a checkout not failed.
        """
        from orchestrator.engine import reopen

        row = await self._row(ref)
        reopened = await reopen.retry(
            self.worker, row, actor=actor or DEFAULT_ACTOR, reason=reason, leased=run
        )
        if not run:
            return Checkout.from_row(reopened)
        return await self.drive_claimed(reopened, intent_committed=False)

    async def retry_many(
        self,
        *,
        error_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        dry_run: bool = False,
        actor: str | None = None,
        reason: str | None = None,
    ) -> RetryReport:
        """Retry every failed checkout the filters select (created in [since, until), last error
        of `error_type`; newest first, at most `limit`): each one the rule allows is reopened,
        due now for the recovery job, and the report lists them and those refused with why.
        With ``dry_run`` nothing changes: the report says what a run would do."""
        from orchestrator.engine import reopen

        return await reopen.retry_many(
            self.worker,
            error_type=error_type,
            since=since,
            until=until,
            limit=limit,
            dry_run=dry_run,
            actor=actor or DEFAULT_ACTOR,
            reason=reason,
        )
