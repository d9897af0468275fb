"""Drive one leased checkout through its steps under the step protocol (design §3).

Each step is bracketed by two commits and the outcome commit of step N is the intent commit of
step N+1, so a checkout costs one write transaction per Violet step. While the worker holds the
lease the row lives in memory (`CheckoutRow`); every write is fenced by the lease epoch.

Between two overwrite steps (customer -> shipping -> token payment -> price) that write runs
*behind* the next call instead of before it (`overlap_writes`): a crash that loses it leaves the
previous step in flight, and its reconcile rule re-applies it before the next one runs again, so
nothing depends on it being durable first. Create-cart's outcome (the Violet cart id), the
submit's intent and a card payment's intent are always committed before their call. Such a
write starts once the next call's request has been sent (violet/sent.py), so it fills the wait
for Violet's answer instead of delaying the request.

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
import logging
import random
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from orchestrator import states
from orchestrator.engine import machine
from orchestrator.engine.crashpoints import CrashPoints
from orchestrator.engine.leases import LeaseKeeper
from orchestrator.engine.steps import (
    STEPS,
    Advance,
    Answer,
    Decision,
    Defer,
    Fail,
    Outcome,
    OutcomeReads,
    Park,
    Pending,
    Redo,
    StepContext,
    error_summary,
)
from orchestrator.errors import LeaseLost
from orchestrator.states import (
    APPLY_CUSTOMER,
    APPLY_PAYMENT,
    APPLY_SHIPPING,
    CANCEL,
    CONFIRM,
    CREATE_CART,
    FAIL,
    PRICE,
    SUBMIT,
)
from orchestrator.store.records import CheckoutRow, Event, StepRecord
from orchestrator.store.repository import Repository
from orchestrator.violet import (
    CallRecord,
    CardPayment,
    Cart,
    OrderStatus,
    VioletAuthError,
    VioletClient,
    VioletError,
    VioletOutcomeUnknown,
    VioletRateLimited,
    VioletSendRefused,
    capture_calls,
    send_gate,
    when_request_sent,
)
from orchestrator.violet.gate import SendGate

log = logging.getLogger(__name__)

#: Steps whose outcome may be committed while the next overwrite step's call runs: their own
#: reconcile rule redoes (or, for a card, re-reads) them, so losing the write loses nothing.
_REDO_SAFE = frozenset({APPLY_CUSTOMER, APPLY_SHIPPING, APPLY_PAYMENT})
#: Steps whose call may start before their intent is durable (overwrite semantics, no data held
#: only in memory); create_cart and submit are never among them.
_MAY_START_BEHIND = frozenset({APPLY_SHIPPING, APPLY_PAYMENT, PRICE})
#: Statuses of a failed call that may nonetheless have been applied upstream (a gateway's answer).
_MAYBE_APPLIED_STATUSES = frozenset({500, 502, 504})


def step_after(row: CheckoutRow) -> str | None:
    """The Violet step a checkout in `row.state` needs next (None: terminal or waiting)."""
    return states.step_after(row.state, row.needs_shipping)


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


@dataclass(slots=True)
class DriveResult:
    """What a drive ended with, plus what is handed to the caller and never stored."""

    row: CheckoutRow
    handout: dict[str, str] = field(default_factory=dict)
    throttle_seconds: float | None = None
    #: Violet refused our credentials during this drive (the row's stored error may be older).
    credentials_refused: bool = False


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
        self.repo = repo
        self.client = client
        self.worker = worker
        self.lease_seconds = lease_seconds
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
        # Writes running behind a call, per checkout: the task, the step whose outcome it
        # commits, and the gate it waits behind until the call's request has been sent.
        self._behind: dict[uuid.UUID, _BehindWrite] = {}

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
            await self._settle_behind(row)

    async def _drive(
        self, row: CheckoutRow, card: CardPayment | None, intent_committed: bool
    ) -> DriveResult:
        result = DriveResult(row)
        needs_reconcile = row.in_flight and not intent_committed
        last_cart: Cart | None = None
        reads = OutcomeReads(self.outcome_wait)
        with machine.attached(row.state) as model:
            # A checkout its workers keep dying on is parked as failed instead of retried
            # forever. A submit in flight is read from Violet first, so an order Violet holds is
            # recorded, unless that read has already killed a worker too (one more try).
            poisoned = needs_reconcile and row.recoveries > self.max_recoveries
            probe_first = row.pending_step == SUBMIT and row.recoveries <= self.max_recoveries + 1
            if poisoned and not probe_first:
                await self._finish_fail(model, row, _poison_error(row), [])
                return result
            while row.pending_step is not None:
                step = STEPS[row.pending_step]
                ctx = StepContext(
                    client=self.client,
                    state=row.state,
                    request=row.request,
                    app_order_id=row.app_order_id,
                    violet_order_id=row.violet_order_id,
                    step_age=row.step_age,
                    settle_window=self.settle_window_of(row),
                    card=card,
                    last_cart=last_cart,
                    handout=result.handout,
                    reading_outcome=reads.started,
                    last_read=reads.exhausted,
                )
                decision: Decision
                calls: list[CallRecord]
                if needs_reconcile:
                    needs_reconcile = False
                    with capture_calls() as calls:
                        try:
                            decision = await step.reconcile(ctx)
                        except VioletError as exc:
                            await self._schedule_retry(
                                row, step.name, exc, calls, result, probing=True
                            )
                            return result
                    _drop_refused_credentials(row)
                    reconciled = Event(
                        "reconciled",
                        step=step.name,
                        attempt=row.attempt,
                        detail=_decision_detail(decision),
                    )
                    if isinstance(decision, Defer):
                        await self._write_release(
                            row,
                            [*_call_events(calls, row), reconciled],
                            due_in=decision.seconds,
                        )
                        return result
                    if isinstance(decision, Pending):
                        events = [*_call_events(calls, row), reconciled]
                        await self._await_outcome(row, decision, events, reads)
                        needs_reconcile = True
                        continue
                    if isinstance(decision, Redo) and poisoned:
                        events = [*_call_events(calls, row), reconciled]
                        await self._finish_fail(model, row, _poison_error(row), events)
                        return result
                    if isinstance(decision, Redo):
                        if row.attempt >= self.retry.max_attempts:
                            await self._exhausted(model, row, step.name, calls, reconciled)
                            return result
                        row.attempt += 1
                        await self._write_intent(row, [*_call_events(calls, row), reconciled])
                    else:
                        intent_committed = await self._apply(
                            model, row, step.name, decision, calls, reconciled
                        )
                        last_cart = decision.cart if not isinstance(decision, Fail) else None
                        continue
                elif not intent_committed:
                    if row.attempt >= self.retry.max_attempts:
                        await self._exhausted(model, row, step.name, [], None)
                        return result
                    row.attempt += 1
                    row.in_flight = True
                    await self._write_intent(row, [])
                intent_committed = False

                self.crash.hit(f"after_intent_commit:{step.name}")
                with (
                    capture_calls() as calls,
                    self._behind_write_follows(row),
                    self._send_gate(row),
                ):
                    try:
                        outcome: Answer = await step.call(ctx)
                    except VioletError as exc:
                        self.crash.hit(f"after_call:{step.name}")
                        await self._schedule_retry(row, step.name, exc, calls, result)
                        return result
                self.crash.hit(f"after_call:{step.name}")
                if isinstance(outcome, Pending):
                    pending = Event(
                        "outcome_pending",
                        step=step.name,
                        attempt=row.attempt,
                        detail=outcome.detail,
                    )
                    await self._await_outcome(
                        row, outcome, [*_call_events(calls, row), pending], reads
                    )
                    needs_reconcile = True
                    continue
                continuing = await self._apply(
                    model, row, step.name, outcome, calls, None, behind=self.overlap_writes
                )
                if row.id not in self._behind:
                    self.crash.hit(f"after_outcome_commit:{step.name}")
                last_cart = outcome.cart if isinstance(outcome, Advance) else None
                intent_committed = continuing
        return result

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
        await self._write(row, events, [], keep_lease=True)

    async def cancel(self, row: CheckoutRow) -> None:
        """Cancel a leased checkout, releasing its Violet cart when it was never submitted.

        The caller has checked it may (api.py `_check_cancelable`: not with a submit in flight).
        """
        events: list[Event] = []
        released = False
        with capture_calls() as calls:
            try:
                carts = await self._carts_to_release(row)
                for cart_id in carts:
                    await self.client.delete_cart(cart_id)
                    if cart_id == row.violet_order_id:
                        row.violet_status = "DELETED"  # what Violet answers for it now
                released = bool(carts)
            except VioletError as exc:
                error = error_summary(exc, CANCEL)
                events.append(_error_event(error, CANCEL))
        before = row.state
        with machine.attached(row.state) as model:
            row.state = machine.fire(model, CANCEL)
        row.pending_step = None
        row.in_flight = False
        row.waiting_reason = None
        events = [
            *_call_events(calls, row),
            *events,
            Event(
                "canceled",
                from_state=before,
                to_state=row.state,
                detail={"violet_cart_released": released},
            ),
            Event("transition", from_state=before, to_state=row.state, step=CANCEL),
        ]
        await self._write(row, events, [], keep_lease=False, terminal=True)

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

    # -- applying outcomes ---------------------------------------------------------------

    async def _await_outcome(
        self, row: CheckoutRow, pending: Pending, events: list[Event], reads: OutcomeReads
    ) -> None:
        """Record what Violet shows of a submit it took but has not settled (the step stays in
        flight, so a crash reads it again too), then wait before the next read. The lease is
        kept: the lease keeper renews it meanwhile."""
        _absorb_cart(row, pending.cart)
        await self._write(row, events, [], keep_lease=True)
        await asyncio.sleep(reads.next_gap())

    async def _apply(
        self,
        model: machine.CheckoutModel,
        row: CheckoutRow,
        step: str,
        outcome: Outcome,
        calls: list[CallRecord],
        lead: Event | None,
        *,
        behind: bool = False,
    ) -> bool:
        """Record an outcome; returns True when the next step's intent was written with it.

        With `behind`, a write between two overwrite steps is left running behind the next call
        (see the module docstring); every later write of the row waits for it first.
        """
        events = [*_call_events(calls, row), *([lead] if lead else [])]
        if outcome.cart is not None:
            _absorb_cart(row, outcome.cart)
        if isinstance(outcome, Fail):
            await self._finish_fail(model, row, outcome.error, events)
            return False
        before = row.state
        row.state = machine.fire(model, outcome.trigger)
        detail = outcome.detail if isinstance(outcome, Advance) else {"reason": outcome.reason}
        events.append(
            Event(
                "transition",
                from_state=before,
                to_state=row.state,
                step=step,
                attempt=row.attempt,
                detail=detail,
            )
        )
        done = StepRecord(
            step_no=row.step_no + 1,
            step=step,
            attempt=row.attempt,
            outcome="done" if isinstance(outcome, Advance) else "waiting",
            started_at=None,  # the row's stored step start (repository.py): ours may be stale
            result=_cart_summary(outcome.cart),
        )
        row.step_no += 1
        row.last_error = None
        row.in_flight = False
        if isinstance(outcome, Park):
            row.pending_step = None
            row.attempt = 0
            row.waiting_reason = outcome.reason
            events.append(Event("waiting", to_state=row.state, detail={"reason": outcome.reason}))
            await self._write(row, events, [done], keep_lease=False)
            return False
        row.waiting_reason = None
        row.pending_step = step_after(row)
        row.attempt = 0
        if row.pending_step is None:
            await self._write(
                row, events, [done], keep_lease=False, terminal=row.state in states.TERMINAL_STATES
            )
            return False
        row.attempt = 1
        row.in_flight = True
        events.append(Event("step_started", step=row.pending_step, attempt=1))
        behind_of = step if behind and self._may_write_behind(row, step) else None
        await self._write(
            row, events, [done], keep_lease=True, start_step=True, behind_of=behind_of
        )
        return True

    def _may_write_behind(self, row: CheckoutRow, done_step: str) -> bool:
        if done_step not in _REDO_SAFE or row.pending_step not in _MAY_START_BEHIND:
            return False
        # A card lives only in this process: its intent is committed before Violet sees it.
        return not (row.pending_step == APPLY_PAYMENT and row.request["payment"]["type"] == "card")

    def _behind_write_follows(self, row: CheckoutRow) -> contextlib.AbstractContextManager[None]:
        """Around a call: let the row's write waiting behind it go once the request is sent."""
        pending = self._behind.get(row.id)
        if pending is None or pending.gate.done():
            return contextlib.nullcontext()
        return when_request_sent(pending.open)

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

    async def _settle_behind(self, row: CheckoutRow) -> None:
        """Wait for the write running behind a call, if any (raises what the write raised)."""
        pending = self._behind.pop(row.id, None)
        if pending is None:
            return
        pending.open()  # no call is coming (or it is over): the write goes now
        try:
            await asyncio.shield(pending.task)
        except asyncio.CancelledError:
            # Cancelled while waiting: the write goes on by itself; nobody is left to read it.
            pending.task.add_done_callback(_retrieve)
            raise
        self.crash.hit(f"after_outcome_commit:{pending.step}")

    async def _finish_fail(
        self,
        model: machine.CheckoutModel,
        row: CheckoutRow,
        error: dict[str, Any],
        events: list[Event],
    ) -> None:
        before = row.state
        step = row.pending_step
        row.state = machine.fire(model, FAIL)
        row.last_error = error
        row.pending_step = None
        row.in_flight = False
        row.waiting_reason = None
        events = [
            *events,
            _error_event(error, step, attempt=row.attempt),
            Event("transition", from_state=before, to_state=row.state, step=step),
        ]
        record = StepRecord(row.step_no + 1, step or "-", row.attempt, "failed", None, error)
        row.step_no += 1
        await self._write(row, events, [record], keep_lease=False, terminal=True)

    async def _exhausted(
        self,
        model: machine.CheckoutModel,
        row: CheckoutRow,
        step: str,
        calls: list[CallRecord],
        lead: Event | None,
    ) -> None:
        last = row.last_error or {}
        error = {
            "class": "permanent",
            "type": "retries_exhausted",
            "message": f"gave up on {step} after {row.attempt} attempts; last error: "
            f"{last.get('type')}: {last.get('message')}",
            "status": last.get("status"),
            "step": step,
        }
        events = [*_call_events(calls, row), *([lead] if lead else [])]
        await self._finish_fail(model, row, error, events)

    async def _schedule_retry(
        self,
        row: CheckoutRow,
        step: str,
        exc: VioletError,
        calls: list[CallRecord],
        result: DriveResult,
        *,
        probing: bool = False,
    ) -> None:
        """A Violet error: permanent ends the checkout, anything else is retried later.

        When a reconcile probe failed (`probing`), the step's outcome is still unknown.
        """
        if isinstance(exc, VioletAuthError) and exc.credentials_refused:
            result.credentials_refused = True
            await self._wait_for_credentials(row, step, exc, calls, probing=probing)
            return
        error = error_summary(exc, step)
        refused = isinstance(exc, VioletSendRefused)
        if refused:
            # Nothing was sent, but recovery may already have redone the step: it stays in
            # flight (the next worker reads Violet first), and the attempt does not count.
            log.warning("checkout %s: %s %s; left to reconcile", row.id, step, exc.message)
        # Failed probes in a row back off further each time (they never use up the step's
        # attempts: its outcome is still unknown, so it stays due); they are counted in the
        # stored error, which any other outcome replaces.
        probes = _probe_failures(row, step) + 1 if probing else 0
        if probes:
            error["probes"] = probes
        events = _call_events(calls, row)
        # A probe refused for our credentials says nothing of the order: Violet may hold it, so
        # the step stays in flight and is read again later (credentials get fixed).
        if exc.classification == "permanent" or (exc.classification == "auth" and not probing):
            with machine.attached(row.state) as model:
                await self._finish_fail(model, row, error, events)
            return
        maybe_applied = isinstance(exc, VioletOutcomeUnknown) or (
            exc.status in _MAYBE_APPLIED_STATUSES
        )
        # An outcome we cannot know keeps the step in flight: the next attempt reconciles first.
        row.in_flight = row.in_flight and (maybe_applied or probing or refused)
        retry_after = exc.retry_after if isinstance(exc, VioletRateLimited) else None
        if retry_after is not None and retry_after > self.retry.max_retry_after:
            log.warning(
                "checkout %s: Violet asked to wait %s s (Retry-After); waiting %s s instead "
                "(ORCHESTRATOR_MAX_RETRY_AFTER)",
                row.id,
                f"{retry_after:.0f}",
                f"{self.retry.max_retry_after:g}",
            )
            retry_after = self.retry.max_retry_after
        delay = self.retry.delay(row.attempt + probes, retry_after)
        if isinstance(exc, VioletRateLimited):
            cap = self.retry.max_retry_after
            result.throttle_seconds = min(max(delay, retry_after or 0.0), cap)
        row.last_error = error
        events += [
            _error_event(error, step, attempt=row.attempt, status=exc.status),
            Event(
                "retry_scheduled",
                step=step,
                attempt=row.attempt,
                detail={"delay_s": round(delay, 3), "reconcile_first": row.in_flight},
            ),
        ]
        record = StepRecord(
            row.step_no + 1,
            step,
            row.attempt,
            "unknown" if row.in_flight else "retry",
            None,  # the row's stored step start, as in _apply
            error,
        )
        row.step_no += 1
        if refused:
            row.attempt = max(row.attempt - 1, 0)
        await self._write_release(row, events, due_in=delay, steps=[record])

    async def _wait_for_credentials(
        self,
        row: CheckoutRow,
        step: str,
        exc: VioletAuthError,
        calls: list[CallRecord],
        *,
        probing: bool,
    ) -> None:
        """Violet refused our login: a configuration error, not this checkout's. Nothing of the
        step was applied (its request was not sent, or answered 401), so it waits, due again
        after the usual backoff, without using up the attempt; an in-flight step stays in flight.
        """
        error = error_summary(exc, step)
        tried = row.attempt
        if not probing:
            row.in_flight = False
            row.attempt = max(row.attempt - 1, 0)
        delay = self.retry.delay(max(row.attempt, 1))
        row.last_error = error
        events = [
            *_call_events(calls, row),
            _error_event(error, step, attempt=tried, status=exc.status),
            Event(
                "retry_scheduled",
                step=step,
                attempt=tried,
                detail={
                    "delay_s": round(delay, 3),
                    "reconcile_first": row.in_flight,
                    "attempt_counted": False,
                },
            ),
        ]
        outcome = "unknown" if row.in_flight else "retry"
        record = StepRecord(row.step_no + 1, step, tried, outcome, None, error)
        row.step_no += 1
        await self._write_release(row, events, due_in=delay, steps=[record])

    # -- writes ----------------------------------------------------------------------------

    async def _write_intent(self, row: CheckoutRow, events: list[Event]) -> None:
        row.in_flight = True
        events = [*events, Event("step_started", step=row.pending_step, attempt=row.attempt)]
        await self._write(row, events, [], keep_lease=True, start_step=True)

    async def _write_release(
        self,
        row: CheckoutRow,
        events: list[Event],
        *,
        due_in: float,
        steps: list[StepRecord] | None = None,
    ) -> None:
        await self._write(row, events, steps or [], keep_lease=False, due_in=due_in)

    async def _write(
        self,
        row: CheckoutRow,
        events: list[Event],
        steps: list[StepRecord],
        *,
        keep_lease: bool,
        start_step: bool = False,
        due_in: float | None = None,
        terminal: bool = False,
        behind_of: str | None = None,
    ) -> None:
        """Write the row; with `behind_of` (the step whose outcome this is), start the write and
        return, leaving it to run behind the next call (`_settle_behind` waits for it)."""
        await self._settle_behind(row)  # writes of one row land in order
        write = self.repo.write(
            row,
            events,
            steps,
            worker=self.worker,
            lease_seconds=self.lease_seconds,
            keep_lease=keep_lease,
            start_step=start_step,
            send_seconds=self.send_window if start_step else None,
            due_in=due_in,
            terminal=terminal,
        )
        if behind_of is not None:
            loop = asyncio.get_running_loop()
            gate: asyncio.Future[None] = loop.create_future()
            task = loop.create_task(_after(gate, write))
            self._behind[row.id] = _BehindWrite(task, behind_of, gate)
            return
        try:
            await write
        except LeaseLost:
            log.warning("checkout %s: lease lost, late write refused", row.id)
            raise


@dataclass(slots=True)
class _BehindWrite:
    """A write left running behind a call; it waits at `gate` until the call's request left."""

    task: asyncio.Task[None]
    step: str
    gate: asyncio.Future[None]

    def open(self) -> None:
        if not self.gate.done():
            self.gate.set_result(None)


async def _after(gate: asyncio.Future[None], write: Coroutine[Any, Any, None]) -> None:
    try:
        await gate
    except BaseException:
        write.close()  # never started: nothing was sent
        raise
    await write


def _retrieve(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(BaseException):
        task.result()


def _drop_refused_credentials(row: CheckoutRow) -> None:
    """A probe Violet answered: a stored credentials refusal is no longer true, so it goes (its
    audit event stays); any other stored error still says why the step is in flight."""
    if (row.last_error or {}).get("class") == "config":
        row.last_error = None


def _probe_failures(row: CheckoutRow, step: str) -> int:
    last = row.last_error or {}
    return int(last.get("probes") or 0) if last.get("step") == step else 0


def _poison_error(row: CheckoutRow) -> dict[str, Any]:
    return {
        "class": "permanent",
        "type": "poison",
        "message": f"worker died {row.recoveries} times on step "
        f"{row.pending_step}; parked instead of retrying forever",
        "status": None,
        "step": row.pending_step,
    }


def _absorb_cart(row: CheckoutRow, cart: Cart) -> None:
    """Copy what we keep of Violet's cart into the row: ids, totals, per-bag status."""
    if row.violet_order_id is None:
        row.violet_order_id = cart.id
    row.violet_status = cart.status
    for name in ("sub_total", "shipping_total", "tax_total", "discount_total", "total"):
        value = getattr(cart, name)
        if value is not None:
            setattr(row, name, value)
    if cart.bags:
        row.bags = [
            {
                "bag_id": bag.id,
                "merchant_id": bag.merchant_id,
                "merchant_name": bag.merchant_name,
                "status": bag.status,
                "financial_status": bag.financial_status,
                "needs_shipping": bag.needs_shipping,
                "total": bag.total,
            }
            for bag in cart.bags
        ]


def _cart_summary(cart: Cart | None) -> dict[str, Any] | None:
    if cart is None:
        return None
    return {"cart_id": cart.id, "status": cart.status, "priced": cart.priced, "total": cart.total}


def _error_event(
    error: dict[str, Any],
    step: str | None,
    *,
    attempt: int | None = None,
    status: int | None = None,
) -> Event:
    """The audit event of an error summary (steps.error_summary)."""
    return Event(
        "error",
        step=step,
        attempt=attempt,
        error_class=error.get("class"),
        error_type=error.get("type"),
        error_message=error.get("message"),
        http_status=status,
    )


def _call_events(calls: list[CallRecord], row: CheckoutRow) -> list[Event]:
    return [
        Event(
            "violet_call",
            step=call.op,
            attempt=row.attempt,
            http_method=call.method,
            http_path=call.path,
            http_status=call.status,
            latency_ms=round(call.latency_ms, 3),
            request_body=call.request,
            response_body=call.response,
            error_class=call.error,
        )
        for call in calls
    ]


def _decision_detail(decision: Decision) -> dict[str, Any]:
    kind = type(decision).__name__.lower()
    detail: dict[str, Any] = {"decision": kind}
    if isinstance(decision, Redo | Defer | Pending):
        detail.update(decision.detail)
    elif isinstance(decision, Advance):
        detail.update(decision.detail or {})
        detail["found"] = "done"
    elif isinstance(decision, Park):
        detail["reason"] = decision.reason
    else:
        detail["error"] = decision.error
    return detail
