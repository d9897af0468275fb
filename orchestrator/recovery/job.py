"""`RecoveryJob`: the claim loop and its drives (the package docstring says what it does)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from orchestrator.engine.actions import reconcile_actions
from orchestrator.engine.runner import DriveResult
from orchestrator.engine.worker import Worker
from orchestrator.errors import (
    CheckoutBusy,
    DatabaseUnavailable,
    LeaseLost,
    OrchestratorError,
    VioletError,
)
from orchestrator.recovery.summary import RecoverySummary, Unfinished, count_outcome
from orchestrator.recovery.waits import DB_RETRY_CAP_S, sleep_unless_stopped
from orchestrator.store import database
from orchestrator.store.records import CheckoutRow
from orchestrator.store.repository import Claim
from orchestrator.webhooks.apply import WebhookApplier, applier_pool

#: The package's name, as `waits` logs under it too (operators filter on one name).
log = logging.getLogger("orchestrator.recovery")
#: The longest an idle job spends counting trusted budget calls (a statistic), seconds.
_IDLE_FLUSH_S = 2.0

Mode = Literal["once", "until-idle", "forever"]
MODES: tuple[Mode, ...] = ("once", "until-idle", "forever")

#: until-idle keeps waiting for work that becomes due within this many seconds (an expiring
#: lease of a crashed worker, a short retry backoff, a submit's settle time); later work is
#: left to the next run.
IDLE_HORIZON_S = 5.0
#: forever mode polls with a backoff that doubles from `poll` up to this cap while idle.
IDLE_POLL_CAP_S = 5.0
#: Most webhook events applied before each claim (the claim loop must not starve behind them).
WEBHOOK_BATCH = 20
#: Most Violet reads spent per pass settling cancels and refunds nobody is working on.
ACTION_READS = 5


@dataclass(slots=True, eq=False)
class _Run:
    """One run's options and moving parts: its summary, drives in progress and waits."""

    mode: Mode
    concurrency: int
    batch: int
    poll: float
    stop: asyncio.Event
    progress: Callable[[RecoverySummary], None] | None
    summary: RecoverySummary = field(default_factory=RecoverySummary)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    slots: asyncio.Semaphore = field(init=False)
    #: forever mode's idle poll, doubling while nothing is due.
    idle_wait: float = field(init=False)
    #: When the database stopped answering (None: it answers), and the next retry's delay.
    db_down_since: float | None = None
    db_delay: float = 0.5
    started: float = field(default_factory=time.monotonic)
    #: Applies webhook events before each claim (None: this job leaves them alone).
    applier: WebhookApplier | None = None
    #: The last pass settled webhook events: there may be more right away.
    webhooks_settled: bool = False

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.concurrency)
        self.idle_wait = self.poll

    def free(self) -> int:
        """How many checkouts the next claim may take."""
        if self.mode == "once":
            return self.batch
        return min(self.batch, self.concurrency - len(self.tasks))


class RecoveryJob:
    """Claims due checkouts and drives them under bounded concurrency (see module docstring).

    Built from an open `Orchestrator`'s `worker`, so it shares that worker's repository,
    runner, lease keeper, id and in-memory card data (a card given to this process is still
    usable by its recovery).
    """

    def __init__(
        self,
        worker: Worker,
        *,
        idle_horizon: float = IDLE_HORIZON_S,
        idle_poll_cap: float = IDLE_POLL_CAP_S,
        db_retry_timeout: float | None = 60.0,
        webhooks: bool = True,
    ) -> None:
        self.worker = worker
        self.webhooks = webhooks
        self.repo = worker.repo  # the claim loop's queries (the drives use the worker's)
        self.idle_horizon = idle_horizon
        self.idle_poll_cap = idle_poll_cap
        self.db_retry_timeout = db_retry_timeout
        self._unfinished = Unfinished()  # of the current run

    async def run(
        self,
        mode: Mode = "until-idle",
        concurrency: int = 8,
        batch: int = 50,
        poll: float = 1.0,
        stop: asyncio.Event | None = None,
        progress: Callable[[RecoverySummary], None] | None = None,
    ) -> RecoverySummary:
        """Run until the mode says so or `stop` is set; returns what was done.

        once: one claim of up to `batch` checkouts. until-idle: until nothing is due now nor
        within `idle_horizon` seconds and nothing is in progress. forever: until `stop`.
        On stop no new claim is made; drives in progress finish (Violet timeouts bound them).
        Violet refusing our credentials sets `stop` too: no checkout can move until they are
        fixed (those driven meanwhile wait, counted in `credentials_refused`).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if concurrency < 1 or batch < 1:
            raise ValueError("concurrency and batch must be >= 1")
        run = _Run(mode, concurrency, batch, poll, stop or asyncio.Event(), progress)
        self._unfinished = Unfinished()
        async with contextlib.AsyncExitStack() as stack:
            if self.webhooks:
                pool = await stack.enter_async_context(
                    applier_pool(self.repo.engine.url, wait=False, wait_seconds=2.0)
                )
                run.applier = WebhookApplier(
                    pool, worker=self.worker.id, crash=self.worker.runner.crash
                )
            try:
                while not run.stop.is_set():
                    await self._apply_webhooks(run)
                    await self._settle_actions(run)
                    claims = await self._claim(run)
                    if claims is None:  # throttled or the database is down: waited, try again
                        continue
                    self._launch(run, claims)
                    if mode == "once" or not await self._wait_for_work(run, claims):
                        break
            finally:
                await self._finish(run)
        log.info("recovery finished: %s", run.summary.line())
        return run.summary

    async def _apply_webhooks(self, run: _Run) -> None:
        """Apply one small batch of pending webhook events (database trouble: the claim right
        after reports it and waits)."""
        run.webhooks_settled = False
        if run.applier is None or run.db_down_since is not None:
            return  # the claim reports the database down and waits; webhooks wait with it
        try:
            done = await run.applier.apply_pending(WEBHOOK_BATCH)
        except Exception as exc:
            if not database.is_database_error(exc):
                raise
            log.warning("webhook events not applied (%s)", database.error_reason(exc))
            return
        summary = run.summary
        summary.webhooks_applied += done.applied
        summary.webhooks_ignored += done.ignored
        summary.webhooks_failed += done.failed
        summary.webhooks_retried += done.retried
        run.webhooks_settled = done.settled > 0

    async def _settle_actions(self, run: _Run) -> None:
        """Read back a few cancels and refunds left open past their settle window; never sends.
        Database or Violet trouble leaves them for a later pass (the claim reports the database)."""
        if run.db_down_since is not None:
            return
        try:
            run.summary.actions_settled += await reconcile_actions(self.worker, ACTION_READS)
        except (VioletError, OrchestratorError) as exc:
            log.warning("open bag actions not settled this pass (%s)", exc)
        except Exception as exc:
            if not database.is_database_error(exc):
                raise
            log.warning("open bag actions not settled (%s)", database.error_reason(exc))

    async def _claim(self, run: _Run) -> list[Claim] | None:
        """Claim what is due and this run has room for; None after waiting instead (on the
        shared 429 throttle, or for an unreachable database)."""
        try:
            cap = self.worker.max_retry_after
            blocked_until = await self.repo.throttle_until("global", cap=cap)
            if blocked_until is not None:
                wait = min((blocked_until - datetime.now(UTC)).total_seconds(), cap)
                log.info("Violet throttled (429): claims wait %.2f s", wait)
                await sleep_unless_stopped(wait, run.stop)
                return None
            free = run.free()
            claims: list[Claim] = []
            if free > 0:
                worker = self.worker
                claims = await self.repo.claim_due(
                    worker=worker.id,
                    limit=free,
                    lease_seconds=worker.lease_seconds,
                    budget_wait=worker.budget_wait if worker.merchant_budgets else None,
                )
        except Exception as exc:
            if not database.is_database_error(exc):
                raise
            await self._database_down(run, exc)
            return None
        if run.db_down_since is not None:
            log.warning("database reachable again; recovery goes on")
            run.db_down_since, run.db_delay = None, 0.5
        return claims

    async def _database_down(self, run: _Run, exc: BaseException) -> None:
        """Wait with backoff for the database; give up once `db_retry_timeout` has passed."""
        now = time.monotonic()
        run.db_down_since = run.db_down_since or now
        if self.db_retry_timeout is not None and now - run.db_down_since >= self.db_retry_timeout:
            raise DatabaseUnavailable(
                f"database unreachable for {now - run.db_down_since:.0f} s; "
                "nothing was marked failed"
            ) from None
        log.warning(
            "database unavailable (%s); retrying in %.1f s (nothing is marked failed)",
            database.error_reason(exc),
            run.db_delay,
        )
        await sleep_unless_stopped(run.db_delay, run.stop)
        run.db_delay = min(run.db_delay * 2, DB_RETRY_CAP_S)

    def _launch(self, run: _Run, claims: list[Claim]) -> None:
        """Start a drive per claim; each waits for a free slot."""
        run.summary.claimed += len(claims)
        for claim in claims:
            task = asyncio.get_running_loop().create_task(
                self._drive_one(claim, run.summary, run.slots, run.stop, run.progress)
            )
            run.tasks.add(task)
            task.add_done_callback(run.tasks.discard)

    async def _wait_for_work(self, run: _Run, claims: list[Claim]) -> bool:
        """Wait until claiming again is worthwhile; False when until-idle mode is done."""
        if claims or run.webhooks_settled:
            run.idle_wait = run.poll
            if len(run.tasks) >= run.concurrency:
                await self._wait_any(run.tasks, run.stop, run.poll)
            return True
        if run.tasks:  # nothing due now but drives running: they may schedule more work
            await self._wait_any(run.tasks, run.stop, run.poll)
            return True
        if run.mode == "until-idle":
            try:
                soon = await self._due_within_horizon()
            except Exception as exc:
                if not database.is_database_error(exc):
                    raise
                return True  # the next claim attempt reports and retries
            retry = run.applier.next_retry_in() if run.applier is not None else None
            if retry is not None and retry <= self.idle_horizon:
                soon = min(soon, retry + 0.01) if soon is not None else retry + 0.01
            if soon is None:
                return False
            await sleep_unless_stopped(soon, run.stop)
            return True
        if self.worker.runner.budgets is not None:
            # Idle: the trusted calls' counts reach `stats` while nothing else writes the rows.
            await self.worker.runner.budgets.flush_quietly(_IDLE_FLUSH_S)
        await sleep_unless_stopped(run.idle_wait, run.stop)
        run.idle_wait = min(run.idle_wait * 2, self.idle_poll_cap)
        return True

    async def _finish(self, run: _Run) -> None:
        """Let the drives in progress end, then count what is still due."""
        if run.tasks:
            await asyncio.gather(*run.tasks, return_exceptions=True)
        try:
            run.summary.still_due = await self.repo.due_count()
        except Exception as exc:
            if not database.is_database_error(exc):
                raise
            run.summary.still_due = -1
        run.summary.duration_s = time.monotonic() - run.started

    async def _wait_any(
        self, tasks: set[asyncio.Task[None]], stop: asyncio.Event, poll: float
    ) -> None:
        """Wait until a drive finishes, `stop` is set, or `poll` seconds pass."""
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({*tasks, stopper}, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()

    async def _due_within_horizon(self) -> float | None:
        """Seconds until the next checkout becomes due, if that is within the idle horizon."""
        next_due = await self.repo.next_due_at()
        if next_due is None:
            return None
        wait = (next_due - datetime.now(UTC)).total_seconds()
        if wait > self.idle_horizon:
            return None
        return max(wait, 0.0) + 0.05

    async def _drive_one(
        self,
        claim: Claim,
        summary: RecoverySummary,
        slots: asyncio.Semaphore,
        stop: asyncio.Event,
        progress: Callable[[RecoverySummary], None] | None,
    ) -> None:
        row = claim.row
        async with slots:
            if stop.is_set():  # claimed but not started (once mode): hand it back, due now
                await self._release(row, due_in=0.0, summary=summary)
                return
            if claim.previous_owner is not None:
                summary.taken_over += 1
            before = row.state
            reconciling = row.in_flight
            driven = await self._drive(row, summary)
            if driven is None:
                return
            self._unfinished.settled(row, summary)
            if driven.credentials_refused:
                summary.credentials_refused += 1
                if not stop.is_set():
                    log.info("Violet refused the credentials; no more checkouts are claimed")
                    stop.set()
            count_outcome(row, summary, before=before, reconciling=reconciling)
            if row.lease_owner == self.worker.id and row.pending_step is None:
                # Nothing to drive (a waiting row whose lease a crash left behind): hand it back
                # rather than sit on it until expiry and be claimed again and again.
                await self._release(row, due_in=None, summary=summary)
            if progress is not None:
                progress(summary)

    async def _drive(self, row: CheckoutRow, summary: RecoverySummary) -> DriveResult | None:
        """Drive one claimed checkout; None if that raised (counted and logged: one checkout's
        failure must not stop the others)."""
        try:
            return await self.worker.drive(row, intent_committed=False)
        except (LeaseLost, CheckoutBusy) as exc:
            summary.errors += 1
            self._unfinished.settled(row, summary)  # another worker holds it now
            log.warning("checkout %s: %s", row.id, exc)
            return None
        except Exception as exc:
            summary.errors += 1
            database_error = database.is_database_error(exc)
            self._unfinished.raised(row, summary, database_error=database_error)
            if database_error:
                log.warning(
                    "checkout %s: database error (%s); left for later",
                    row.id,
                    database.error_reason(exc),
                )
            else:
                log.exception("checkout %s: drive failed; left for later", row.id)
            return None

    async def _release(
        self, row: CheckoutRow, *, due_in: float | None, summary: RecoverySummary
    ) -> None:
        """Give a claimed lease back (fenced write) so another worker need not wait for expiry."""
        try:
            await self.worker.leases.release(row, due_in=due_in)
        except LeaseLost:
            pass
        except Exception as exc:
            summary.errors += 1
            log.warning(
                "checkout %s: could not release its lease (%s)", row.id, database.error_reason(exc)
            )


__all__ = [
    "ACTION_READS",
    "IDLE_HORIZON_S",
    "IDLE_POLL_CAP_S",
    "MODES",
    "WEBHOOK_BATCH",
    "Mode",
    "RecoveryJob",
]
