"""Drive one leased checkout through its steps under the step protocol (design §3).

While the worker holds the lease the row lives in memory (`CheckoutRow`); each step is an intent
commit, a Violet call and an outcome commit (recorder.py), and between two overwrite steps that
outcome commit may run behind the next call (write_behind.py). A row found in flight is
reconciled first: its step's rule reads Violet and decides to advance, redo, wait or fail.

Create-cart and the submit are never repeated blindly: after a lost answer the next worker reads
Violet, and redoes the step only once it is older than the settle window (from the sender's
stored bound, `step_send_by`). So their request, and a card payment's (which the card's holder
re-applies at once, but which must not land after another process moved the checkout on), is
sent only while the step is younger than the part of that window it may leave in
(`send_window`), measured on the local clock from just before the intent write, and while the
lease is surely ours (violet/gate.py); a refused request leaves the step to that reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from dataclasses import dataclass, field

from orchestrator import states
from orchestrator.engine import machine, retries
from orchestrator.engine.crashpoints import CrashPoints
from orchestrator.engine.events import (
    absorb_cart,
    call_events,
    decision_detail,
    error_event,
    poison_error,
)
from orchestrator.engine.leases import LeaseKeeper
from orchestrator.engine.recorder import Recorder
from orchestrator.engine.retries import RetryPolicy
from orchestrator.engine.steps import (
    STEPS,
    Advance,
    Decision,
    Defer,
    Fail,
    OutcomeReads,
    Pending,
    Redo,
    Step,
    StepContext,
    error_summary,
)
from orchestrator.states import APPLY_PAYMENT, CANCEL, CONFIRM, CREATE_CART, SUBMIT
from orchestrator.store.records import CheckoutRow, Event
from orchestrator.store.repository import Repository
from orchestrator.violet import (
    CallRecord,
    CardPayment,
    Cart,
    OrderStatus,
    VioletClient,
    VioletError,
    capture_calls,
    send_gate,
)
from orchestrator.violet.gate import SendGate

__all__ = ["DriveResult", "RetryPolicy", "Runner", "step_after"]


def step_after(row: CheckoutRow) -> str | None:
    """The Violet step a checkout in `row.state` needs next (None: terminal or waiting)."""
    return states.step_after(row.state, row.needs_shipping)


@dataclass(slots=True)
class DriveResult:
    """What a drive ended with, plus what is handed to the caller and never stored."""

    row: CheckoutRow
    handout: dict[str, str] = field(default_factory=dict)
    throttle_seconds: float | None = None
    #: Violet refused our credentials during this drive (the row's stored error may be older).
    credentials_refused: bool = False


class _Next(enum.Enum):
    """Where a drive goes after a part of a step."""

    STOP = enum.auto()  # the row is released, waiting, or finished
    CALL = enum.auto()  # the step's intent is durable: make its call
    LOOP = enum.auto()  # take up the row's pending step afresh


@dataclass(slots=True)
class _Drive:
    """What one drive carries from step to step."""

    row: CheckoutRow
    card: CardPayment | None
    model: machine.CheckoutModel
    result: DriveResult
    reads: OutcomeReads
    #: The pending step's outcome is unknown: read Violet before anything else.
    reconcile: bool
    #: Its workers keep dying on this checkout: a step to redo fails it instead.
    poisoned: bool
    #: The pending step's intent is durable already (written with the last outcome).
    intent_written: bool
    #: The cart as Violet last returned it during this drive.
    last_cart: Cart | None = None


class Runner:
    """Runs steps for leased checkouts; stateless apart from its collaborators."""

    def __init__(
        self,
        repo: Repository,
        client: VioletClient,
        *,
        worker: str,
        lease_seconds: float,
        settle_seconds: float,
        retry: RetryPolicy,
        max_recoveries: int,
        crash: CrashPoints | None = None,
        overlap_writes: bool = True,
        outcome_wait: float = 30.0,
        leases: LeaseKeeper | None = None,
    ) -> None:
        self.client = client
        # A call lasts at most the client's total timeout (auth and retries included), and a
        # step makes at most two before its write (a resumed submit reads the cart first): its
        # request leaves within two total timeouts of the step's start (the send gate holds it
        # to that), and may then still be running at Violet for the settle time.
        self.send_window = 2 * client.total_timeout
        self.settle_seconds = settle_seconds
        self.settle_window = self.send_window + settle_seconds
        self.retry = retry
        self.max_recoveries = max_recoveries
        self.crash = crash or CrashPoints()
        self.overlap_writes = overlap_writes
        #: How long one drive keeps reading a submit Violet took but has not settled.
        self.outcome_wait = outcome_wait
        self.leases = leases
        self.recorder = Recorder(
            repo,
            worker=worker,
            lease_seconds=lease_seconds,
            send_window=self.send_window,
            crash=self.crash,
        )

    def settle_window_of(self, row: CheckoutRow) -> float:
        """From the step's start, how long its unanswered request may still be running at
        Violet: this process's settle window, or longer when the process that started the step
        may send until a later instant (`step_send_by`, by its own timeouts) plus the settle
        time. Reconcilers and senders may run with different Violet timeouts."""
        started, send_by = row.step_started_at, row.step_send_by
        if started is None or send_by is None:
            return self.settle_window
        senders = (send_by - started).total_seconds() + self.settle_seconds
        return max(self.settle_window, senders)

    async def drive(
        self, row: CheckoutRow, *, card: CardPayment | None = None, intent_committed: bool = False
    ) -> DriveResult:
        """Advance a leased checkout until it is terminal, waiting, or scheduled for later.

        `intent_committed` is True when the caller already committed the intent of the pending
        step (a fresh start); otherwise an in-flight row is reconciled first and a row at rest
        gets its intent commit here.
        """
        try:
            return await self._drive(row, card, intent_committed)
        finally:
            await self.recorder.settle(row)

    async def _drive(
        self, row: CheckoutRow, card: CardPayment | None, intent_committed: bool
    ) -> DriveResult:
        result = DriveResult(row)
        reconcile = row.in_flight and not intent_committed
        with machine.attached(row.state) as model:
            drive = _Drive(
                row,
                card,
                model,
                result,
                OutcomeReads(self.outcome_wait),
                reconcile=reconcile,
                poisoned=reconcile and row.recoveries > self.max_recoveries,
                intent_written=intent_committed,
            )
            if await self._parked_as_poison(drive):
                return result
            while row.pending_step is not None:
                if not await self._take_step(drive, STEPS[row.pending_step]):
                    break
        return result

    async def _parked_as_poison(self, drive: _Drive) -> bool:
        """A checkout its workers keep dying on is parked as failed instead of retried forever.
        A submit in flight is read from Violet first, so an order Violet holds is recorded,
        unless that read has already killed a worker too (one more try)."""
        row = drive.row
        probe_first = row.pending_step == SUBMIT and row.recoveries <= self.max_recoveries + 1
        if not drive.poisoned or probe_first:
            return False
        await self.recorder.fail(drive.model, row, poison_error(row), [])
        return True

    async def _take_step(self, drive: _Drive, step: Step) -> bool:
        """Run the pending step once: reconcile it or write its intent, then call it. Returns
        False when the drive is over."""
        ctx = self._context(drive)
        if drive.reconcile:
            after = await self._reconcile(drive, step, ctx)
            if after is not _Next.CALL:
                return after is _Next.LOOP
        elif not drive.intent_written and not await self._start(drive, step):
            return False
        drive.intent_written = False
        return await self._call(drive, step, ctx)

    def _context(self, drive: _Drive) -> StepContext:
        row = drive.row
        return StepContext(
            client=self.client,
            state=row.state,
            request=row.request,
            app_order_id=row.app_order_id,
            violet_order_id=row.violet_order_id,
            step_age=row.step_age,
            settle_window=self.settle_window_of(row),
            card=drive.card,
            last_cart=drive.last_cart,
            handout=drive.result.handout,
            reading_outcome=drive.reads.started,
            last_read=drive.reads.exhausted,
        )

    async def _reconcile(self, drive: _Drive, step: Step, ctx: StepContext) -> _Next:
        """Read Violet for the step in flight and act on what its rule decides."""
        drive.reconcile = False
        with capture_calls() as calls:
            try:
                decision = await step.reconcile(ctx)
            except VioletError as exc:
                await self._setback(drive, step.name, exc, calls, probing=True)
                return _Next.STOP
        retries.drop_refused_credentials(drive.row)
        reconciled = Event(
            "reconciled",
            step=step.name,
            attempt=drive.row.attempt,
            detail=decision_detail(decision),
        )
        return await self._decided(drive, step.name, decision, calls, reconciled)

    async def _decided(
        self,
        drive: _Drive,
        step: str,
        decision: Decision,
        calls: list[CallRecord],
        reconciled: Event,
    ) -> _Next:
        row = drive.row
        if isinstance(decision, Defer):
            events = [*call_events(calls, row), reconciled]
            await self.recorder.release(row, events, due_in=decision.seconds)
            return _Next.STOP
        if isinstance(decision, Pending):
            await self._await_outcome(drive, decision, [*call_events(calls, row), reconciled])
            return _Next.LOOP
        if isinstance(decision, Redo):
            return await self._redo(drive, step, calls, reconciled)
        drive.intent_written = await self.recorder.apply(
            drive.model, row, step, decision, calls, reconciled
        )
        drive.last_cart = decision.cart if not isinstance(decision, Fail) else None
        return _Next.LOOP

    async def _redo(
        self, drive: _Drive, step: str, calls: list[CallRecord], reconciled: Event
    ) -> _Next:
        """The step in flight is to be done again: a new attempt, unless none is left."""
        row = drive.row
        if drive.poisoned:
            events = [*call_events(calls, row), reconciled]
            await self.recorder.fail(drive.model, row, poison_error(row), events)
            return _Next.STOP
        if row.attempt >= self.retry.max_attempts:
            await self.recorder.exhausted(drive.model, row, step, calls, reconciled)
            return _Next.STOP
        row.attempt += 1
        await self.recorder.write_intent(row, [*call_events(calls, row), reconciled])
        return _Next.CALL

    async def _start(self, drive: _Drive, step: Step) -> bool:
        """Write the intent of a step at rest; False when it has no attempt left."""
        row = drive.row
        if row.attempt >= self.retry.max_attempts:
            await self.recorder.exhausted(drive.model, row, step.name, [], None)
            return False
        row.attempt += 1
        row.in_flight = True
        await self.recorder.write_intent(row, [])
        return True

    async def _call(self, drive: _Drive, step: Step, ctx: StepContext) -> bool:
        """Make the step's call and record its answer; False when the drive is over."""
        row = drive.row
        self.crash.hit(f"after_intent_commit:{step.name}")
        with (
            capture_calls() as calls,
            self.recorder.behind.follows(row),
            self._send_gate(row),
        ):
            try:
                answer = await step.call(ctx)
            except VioletError as exc:
                self.crash.hit(f"after_call:{step.name}")
                await self._setback(drive, step.name, exc, calls)
                return False
        self.crash.hit(f"after_call:{step.name}")
        if isinstance(answer, Pending):
            pending = Event(
                "outcome_pending", step=step.name, attempt=row.attempt, detail=answer.detail
            )
            await self._await_outcome(drive, answer, [*call_events(calls, row), pending])
            return True
        drive.intent_written = await self.recorder.apply(
            drive.model, row, step.name, answer, calls, None, behind=self.overlap_writes
        )
        if not self.recorder.behind.holds(row):
            self.crash.hit(f"after_outcome_commit:{step.name}")
        drive.last_cart = answer.cart if isinstance(answer, Advance) else None
        return True

    async def _await_outcome(self, drive: _Drive, pending: Pending, events: list[Event]) -> None:
        """Record what Violet shows of a submit it took but has not settled (the step stays in
        flight, so a crash reads it again too), then wait before the next read. The lease is
        kept: the lease keeper renews it meanwhile."""
        absorb_cart(drive.row, pending.cart)
        await self.recorder.write(drive.row, events, [], keep_lease=True)
        await asyncio.sleep(drive.reads.next_gap())
        drive.reconcile = True

    async def _setback(
        self,
        drive: _Drive,
        step: str,
        exc: VioletError,
        calls: list[CallRecord],
        *,
        probing: bool = False,
    ) -> None:
        """A Violet error: permanent ends the checkout, anything else is retried later.

        When a reconcile probe failed (`probing`), the step's outcome is still unknown.
        """
        row = drive.row
        if retries.refuses_credentials(exc):
            drive.result.credentials_refused = True
            retry = retries.wait_for_credentials(row, step, exc, calls, self.retry, probing=probing)
        else:
            error = retries.failure(row, step, exc, probing=probing)
            if retries.ends_checkout(exc, probing=probing):
                await self.recorder.fail(drive.model, row, error, call_events(calls, row))
                return
            retry = retries.retry_later(row, step, exc, error, calls, self.retry, probing=probing)
            if retry.throttle is not None:
                drive.result.throttle_seconds = retry.throttle
        await self.recorder.release(row, retry.events, due_in=retry.delay, steps=[retry.record])

    async def confirm(self, row: CheckoutRow, resume_step: str) -> None:
        """Record the shopper's confirmation and set the step to resume with (lease held).

        Resuming a submit marks it in flight, so the drive re-reads Violet before any new submit.
        """
        before = row.state
        with machine.attached(row.state) as model:
            row.state = machine.fire(model, CONFIRM)
        row.pending_step = resume_step
        row.waiting_reason = None
        row.in_flight = resume_step == SUBMIT
        events = [
            Event("confirmed", from_state=before, to_state=row.state, step=resume_step),
            Event("transition", from_state=before, to_state=row.state, step=CONFIRM),
        ]
        await self.recorder.write(row, events, [], keep_lease=True)

    async def cancel(self, row: CheckoutRow) -> None:
        """Cancel a leased checkout, releasing its Violet cart when it was never submitted.

        The caller has checked it may (api.py `_check_cancelable`: not with a submit in flight).
        """
        with capture_calls() as calls:
            released, errors = await self._release_carts(row)
        before = row.state
        with machine.attached(row.state) as model:
            row.state = machine.fire(model, CANCEL)
        row.pending_step = None
        row.in_flight = False
        row.waiting_reason = None
        events = [
            *call_events(calls, row),
            *errors,
            Event(
                "canceled",
                from_state=before,
                to_state=row.state,
                detail={"violet_cart_released": released},
            ),
            Event("transition", from_state=before, to_state=row.state, step=CANCEL),
        ]
        await self.recorder.write(row, events, [], keep_lease=False, terminal=True)

    async def _release_carts(self, row: CheckoutRow) -> tuple[bool, list[Event]]:
        """Delete the Violet carts a cancel releases: whether any was, and the error met."""
        try:
            carts = await self._carts_to_release(row)
            for cart_id in carts:
                await self.client.delete_cart(cart_id)
                if cart_id == row.violet_order_id:
                    row.violet_status = "DELETED"  # what Violet answers for it now
        except VioletError as exc:
            return False, [error_event(error_summary(exc, CANCEL), CANCEL)]
        return bool(carts), []

    async def _carts_to_release(self, row: CheckoutRow) -> list[int]:
        """The Violet carts a cancel releases: ours if never submitted, or, when create_cart's
        answer was lost, whatever Violet made under our app_order_id (its reconcile rule)."""
        if row.violet_order_id is not None:
            unsubmitted = row.violet_status in (None, OrderStatus.IN_PROGRESS)
            return [row.violet_order_id] if unsubmitted else []
        if not (row.in_flight and row.pending_step == CREATE_CART):
            return []
        found = await self.client.search_orders(
            app_order_id=row.app_order_id, exclude_in_progress=False
        )
        return [cart.id for cart in found if cart.status == OrderStatus.IN_PROGRESS]

    def _send_gate(self, row: CheckoutRow) -> contextlib.AbstractContextManager[None]:
        """Around the call of a step that must not be repeated blindly: its request leaves only
        within the send window from the step's start, and while the lease is surely ours."""
        step = row.pending_step
        card = step == APPLY_PAYMENT and row.request["payment"]["type"] == "card"
        if step not in (CREATE_CART, SUBMIT) and not card:
            return contextlib.nullcontext()
        # Unknown start (never the case after an intent write of this process): refuse.
        started = row.local_step_start
        deadline = float("-inf") if started is None else started + self.send_window
        return send_gate(SendGate(deadline=deadline, lease_until=lambda: self._lease_until(row)))

    def _lease_until(self, row: CheckoutRow) -> float:
        """Until when the lease is surely ours, on the local clock (-inf: it may not be)."""
        until = row.local_lease_until
        if until is None:
            return float("-inf")
        renewed = self.leases.renewed_until(row.id) if self.leases is not None else None
        return until if renewed is None else max(until, renewed)
