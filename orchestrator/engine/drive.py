"""One drive: a leased checkout taken through its steps until it rests (design §3).

A row found in flight is reconciled first: its step's rule reads Violet and decides to advance,
redo, wait or fail. A row at rest gets its intent commit, then its call, then the outcome commit,
which is also the intent commit of the next step (recorder.py). What a drive carries from step to
step (whether the next step must be read first, whether its intent is durable already, the cart
Violet last returned) is the state of one `Drive`, so each part of a step reads as what it does.

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
from typing import TYPE_CHECKING

from orchestrator import observe, tracing
from orchestrator.engine import machine, retries
from orchestrator.engine.budgets import MerchantPacer, checkout_merchants
from orchestrator.engine.events import absorb_cart, call_events, decision_detail, poison_error
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
)
from orchestrator.states import APPLY_PAYMENT, CREATE_CART, SUBMIT
from orchestrator.store.records import CheckoutRow, Event
from orchestrator.violet import (
    CallRecord,
    CardPayment,
    Cart,
    VioletBudgetClosed,
    VioletError,
    capture_calls,
    paced_by,
    send_gate,
)
from orchestrator.violet.gate import SendGate

if TYPE_CHECKING:
    from orchestrator.engine.runner import Runner


@dataclass(slots=True)
class DriveResult:
    """What a drive ended with, plus what is handed to the caller and never stored."""

    row: CheckoutRow
    handout: dict[str, str] = field(default_factory=dict)
    throttle_seconds: float | None = None
    #: Violet refused our credentials during this drive (the row's stored error may be older).
    credentials_refused: bool = False


class _Next(enum.Enum):
    """Where a drive goes after a reconcile."""

    STOP = enum.auto()  # the row is released, waiting, or finished
    CALL = enum.auto()  # the step's intent is durable: make its call
    LOOP = enum.auto()  # take up the row's pending step afresh


class Drive:
    """One pass of a runner over one leased row, attached to its state machine model."""

    def __init__(
        self,
        runner: Runner,
        row: CheckoutRow,
        model: machine.CheckoutModel,
        card: CardPayment | None,
        *,
        intent_committed: bool,
    ) -> None:
        self.runner = runner
        self.recorder = runner.recorder
        self.row = row
        self.model = model
        self.card = card
        self.result = DriveResult(row)
        self.reads = OutcomeReads(runner.outcome_wait)
        #: The pending step's outcome is unknown: read Violet before anything else.
        self.reconcile = row.in_flight and not intent_committed
        #: Its workers keep dying on this checkout: a step to redo fails it instead.
        self.poisoned = self.reconcile and row.recoveries > runner.max_recoveries
        #: The pending step's intent is durable already (written with the last outcome).
        self.intent_written = intent_committed
        #: The cart as Violet last returned it during this drive.
        self.last_cart: Cart | None = None
        budgets = runner.budgets
        #: Paces the calls on the merchants' rate budgets (None: per-merchant budgets off).
        self.pacer = (
            MerchantPacer(
                budgets,
                lambda: checkout_merchants(self.row),
                max_wait=runner.budget_wait,
                max_retry_after=runner.retry.max_retry_after,
            )
            if budgets is not None
            else None
        )

    async def run(self) -> DriveResult:
        """Advance the row until it is terminal, waiting, or scheduled for later."""
        if await self._parked_as_poison():
            return self.result
        with paced_by(self.pacer):
            while self.row.pending_step is not None:
                if not await self._take_step(STEPS[self.row.pending_step]):
                    break
        return self.result

    async def _parked_as_poison(self) -> bool:
        """A checkout its workers keep dying on is parked as failed instead of retried forever.
        A submit in flight is read from Violet first, so an order Violet holds is recorded,
        unless that read has already killed a worker too (one more try)."""
        row = self.row
        limit = self.runner.max_recoveries
        probe_first = row.pending_step == SUBMIT and row.recoveries <= limit + 1
        if not self.poisoned or probe_first:
            return False
        await self.recorder.fail(self.model, row, poison_error(row), [])
        return True

    async def _take_step(self, step: Step) -> bool:
        """Run the pending step once: reconcile it or write its intent, then call it. Returns
        False when the drive is over."""
        attributes: dict[str, str | int] = {
            "orchestrator.checkout_id": str(self.row.id),
            "orchestrator.step": step.name,
            "orchestrator.state": self.row.state,
            "orchestrator.attempt": self.row.attempt,
            "orchestrator.reconcile": int(self.reconcile),
        }
        with tracing.span(f"orchestrator.step {step.name}", attributes) as current:
            going_on = await self._take_step_traced(step)
            if current is not None:
                current.set_attribute("orchestrator.state_after", self.row.state)
            return going_on

    async def _take_step_traced(self, step: Step) -> bool:
        ctx = self._context()
        if self.reconcile:
            after = await self._reconcile(step, ctx)
            if after is not _Next.CALL:
                return after is _Next.LOOP
        elif not self.intent_written and not await self._start(step, ctx):
            return False
        self.intent_written = False
        try:
            return await self._call(step, ctx)
        finally:
            if self.pacer is not None:
                self.pacer.forget_reserved()

    def _context(self) -> StepContext:
        row = self.row
        return StepContext(
            client=self.runner.client,
            state=row.state,
            request=row.request,
            app_order_id=row.app_order_id,
            violet_order_id=row.violet_order_id,
            step_age=row.step_age,
            settle_window=self.runner.settle_window_of(row),
            card=self.card,
            last_cart=self.last_cart,
            handout=self.result.handout,
            reading_outcome=self.reads.started,
            last_read=self.reads.exhausted,
        )

    async def _reconcile(self, step: Step, ctx: StepContext) -> _Next:
        """Read Violet for the step in flight and act on what its rule decides."""
        self.reconcile = False
        with capture_calls() as calls:
            try:
                decision = await step.reconcile(ctx)
            except VioletError as exc:
                observe.reconcile_verdict("unreadable")
                await self._setback(step.name, exc, calls, probing=True)
                return _Next.STOP
        observe.reconcile_verdict(type(decision).__name__.lower())
        retries.drop_refused_credentials(self.row)
        reconciled = Event(
            "reconciled",
            step=step.name,
            attempt=self.row.attempt,
            detail=decision_detail(decision),
        )
        return await self._decided(step.name, decision, calls, reconciled)

    async def _decided(
        self, step: str, decision: Decision, calls: list[CallRecord], reconciled: Event
    ) -> _Next:
        row = self.row
        if isinstance(decision, Defer):
            events = [*call_events(calls, row), reconciled]
            await self.recorder.release(row, events, due_in=decision.seconds)
            return _Next.STOP
        if isinstance(decision, Pending):
            await self._await_outcome(decision, [*call_events(calls, row), reconciled])
            return _Next.LOOP
        if isinstance(decision, Redo):
            return await self._redo(step, calls, reconciled)
        self.intent_written = await self.recorder.apply(
            self.model, row, step, decision, calls, reconciled
        )
        self.last_cart = decision.cart if not isinstance(decision, Fail) else None
        return _Next.LOOP

    async def _redo(self, step: str, calls: list[CallRecord], reconciled: Event) -> _Next:
        """The step in flight is to be done again: a new attempt, unless none is left."""
        row = self.row
        if self.poisoned:
            events = [*call_events(calls, row), reconciled]
            await self.recorder.fail(self.model, row, poison_error(row), events)
            return _Next.STOP
        if row.attempt >= self.runner.retry.max_attempts:
            await self.recorder.exhausted(self.model, row, step, calls, reconciled)
            return _Next.STOP
        row.attempt += 1
        await self.recorder.write_intent(row, [*call_events(calls, row), reconciled])
        return _Next.CALL

    async def _start(self, step: Step, ctx: StepContext) -> bool:
        """Write the intent of a step at rest; False when it has no attempt left, or when the
        merchants' budgets have no turn for its first call (the checkout is deferred then, with
        no intent written: pacer `reserve`)."""
        row = self.row
        if row.attempt >= self.runner.retry.max_attempts:
            await self.recorder.exhausted(self.model, row, step.name, [], None)
            return False
        if self.pacer is not None and step.paces_first_call(ctx):
            try:
                await self.pacer.reserve(step.name)
            except VioletBudgetClosed as exc:
                retry = retries.wait_for_budget(
                    row, step.name, exc, [], probing=False, started=False
                )
                await self.recorder.release(row, retry.events, due_in=retry.delay)
                return False
        row.attempt += 1
        row.in_flight = True
        await self.recorder.write_intent(row, [])
        return True

    async def _call(self, step: Step, ctx: StepContext) -> bool:
        """Make the step's call and record its answer; False when the drive is over."""
        row, crash = self.row, self.runner.crash
        crash.hit(f"after_intent_commit:{step.name}")
        with capture_calls() as calls, self.recorder.behind.follows(row), self._send_gate():
            try:
                answer = await step.call(ctx)
            except VioletError as exc:
                crash.hit(f"after_call:{step.name}")
                await self._setback(step.name, exc, calls)
                return False
        crash.hit(f"after_call:{step.name}")
        if isinstance(answer, Pending):
            pending = Event(
                "outcome_pending", step=step.name, attempt=row.attempt, detail=answer.detail
            )
            await self._await_outcome(answer, [*call_events(calls, row), pending])
            return True
        self.intent_written = await self.recorder.apply(
            self.model, row, step.name, answer, calls, None, behind=self.runner.overlap_writes
        )
        if not self.recorder.behind.holds(row):
            crash.hit(f"after_outcome_commit:{step.name}")
        self.last_cart = answer.cart if isinstance(answer, Advance) else None
        return True

    async def _await_outcome(self, pending: Pending, events: list[Event]) -> None:
        """Record what Violet shows of a submit it took but has not settled (the step stays in
        flight, so a crash reads it again too), then wait before the next read. The lease is
        kept: the lease keeper renews it meanwhile."""
        absorb_cart(self.row, pending.cart)
        await self.recorder.write(self.row, events, keep_lease=True)
        await asyncio.sleep(self.reads.next_gap())
        self.reconcile = True

    async def _setback(
        self, step: str, exc: VioletError, calls: list[CallRecord], *, probing: bool = False
    ) -> None:
        """A Violet error: permanent ends the checkout, anything else is retried later.

        When a reconcile probe failed (`probing`), the step's outcome is still unknown.
        """
        row, policy = self.row, self.runner.retry
        if isinstance(exc, VioletBudgetClosed):
            retry = retries.wait_for_budget(row, step, exc, calls, probing=probing)
        elif retries.refuses_credentials(exc):
            self.result.credentials_refused = True
            retry = retries.wait_for_credentials(row, step, exc, calls, policy, probing=probing)
        else:
            error = retries.failure(row, step, exc, probing=probing)
            if retries.ends_checkout(exc, probing=probing):
                await self.recorder.fail(self.model, row, error, call_events(calls, row))
                return
            retry = retries.retry_later(row, step, exc, error, calls, policy, probing=probing)
            # A 429 the merchants' budgets took is theirs; any other closes the global one.
            charged = self.pacer is not None and self.pacer.charged_429
            if retry.throttle is not None and not charged:
                self.result.throttle_seconds = retry.throttle
        await self.recorder.release(row, retry.events, due_in=retry.delay)

    def _send_gate(self) -> contextlib.AbstractContextManager[None]:
        """Around the call of a step that must not be repeated blindly: its request leaves only
        within the send window from the step's start, and while the lease is surely ours."""
        row = self.row
        step = row.pending_step
        card = step == APPLY_PAYMENT and row.request["payment"]["type"] == "card"
        if step not in (CREATE_CART, SUBMIT) and not card:
            return contextlib.nullcontext()
        # Unknown start (never the case after an intent write of this process): refuse.
        started = row.local_step_start
        deadline = float("-inf") if started is None else started + self.runner.send_window
        return send_gate(SendGate(deadline=deadline, lease_until=self._lease_until))

    def _lease_until(self) -> float:
        """Until when the lease is surely ours, on the local clock (-inf: it may not be)."""
        until = self.row.local_lease_until
        if until is None:
            return float("-inf")
        leases = self.runner.leases
        renewed = leases.renewed_until(self.row.id) if leases is not None else None
        return until if renewed is None else max(until, renewed)
