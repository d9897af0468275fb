"""Writes of a leased checkout's row: a step's intent, the outcome it reached, its failure.

Each step is bracketed by two commits and the outcome commit of step N is the intent commit of
step N+1, so a checkout costs one write transaction per Violet step. Every write is fenced by
the lease epoch (repository.py), and one row's writes land in order: each first waits for the
write running behind a call, if any (write_behind.py).
"""

from __future__ import annotations

import logging
from typing import Any

from orchestrator import states
from orchestrator.engine import machine
from orchestrator.engine.crashpoints import CrashPoints
from orchestrator.engine.events import (
    absorb_cart,
    call_events,
    cart_summary,
    error_event,
    exhausted_error,
)
from orchestrator.engine.ports import EngineStore
from orchestrator.engine.steps import Advance, Fail, Outcome, Park
from orchestrator.engine.write_behind import WriteBehind, may_write_behind
from orchestrator.errors import LeaseLost
from orchestrator.states import FAIL
from orchestrator.store.records import CheckoutRow, Event
from orchestrator.violet import CallRecord

log = logging.getLogger(__name__)


class Recorder:
    """Turns what a step ended with into the leased row's next write."""

    def __init__(
        self,
        repo: EngineStore,
        *,
        worker: str,
        lease_seconds: float,
        send_window: float,
        crash: CrashPoints,
    ) -> None:
        self.repo = repo
        self.worker = worker
        self.lease_seconds = lease_seconds
        #: Stored with each intent: how long its request may still leave (`step_send_by`).
        self.send_window = send_window
        self.behind = WriteBehind(crash)

    async def apply(
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
        (write_behind.py); every later write of the row waits for it first.
        """
        events = [*call_events(calls, row), *([lead] if lead else [])]
        if outcome.cart is not None:
            absorb_cart(row, outcome.cart)
        if isinstance(outcome, Fail):
            await self.fail(model, row, outcome.error, events)
            return False
        _close_step(model, row, step, outcome, events)
        if isinstance(outcome, Park):
            row.pending_step = None
            row.attempt = 0
            row.waiting_reason = outcome.reason
            events.append(Event("waiting", to_state=row.state, detail={"reason": outcome.reason}))
            await self.write(row, events, keep_lease=False)
            return False
        row.waiting_reason = None
        row.pending_step = states.step_after(row.state, row.needs_shipping)
        row.attempt = 0
        if row.pending_step is None:
            terminal = row.state in states.TERMINAL_STATES
            await self.write(row, events, keep_lease=False, terminal=terminal)
            return False
        await self._start_next(row, step, events, behind=behind)
        return True

    async def _start_next(
        self,
        row: CheckoutRow,
        done_step: str,
        events: list[Event],
        *,
        behind: bool,
    ) -> None:
        """Write the next step's intent with the outcome of the one done (behind its call, if
        it may)."""
        row.attempt = 1
        row.in_flight = True
        events.append(Event("step_started", step=row.pending_step, attempt=1))
        behind_of = done_step if behind and may_write_behind(row, done_step) else None
        await self.write(row, events, keep_lease=True, start_step=True, behind_of=behind_of)

    async def fail(
        self,
        model: machine.CheckoutModel,
        row: CheckoutRow,
        error: dict[str, Any],
        events: list[Event],
    ) -> None:
        """End the checkout as failed with `error`, after `events`; the lease goes with it."""
        before = row.state
        step = row.pending_step
        row.state = machine.fire(model, FAIL)
        row.last_error = error
        row.pending_step = None
        row.in_flight = False
        row.waiting_reason = None
        events = [
            *events,
            error_event(error, step, attempt=row.attempt),
            Event("transition", from_state=before, to_state=row.state, step=step),
        ]
        row.step_no += 1
        await self.write(row, events, keep_lease=False, terminal=True)

    async def exhausted(
        self,
        model: machine.CheckoutModel,
        row: CheckoutRow,
        step: str,
        calls: list[CallRecord],
        lead: Event | None,
    ) -> None:
        """End the checkout whose step used up its attempts."""
        events = [*call_events(calls, row), *([lead] if lead else [])]
        await self.fail(model, row, exhausted_error(row, step), events)

    async def write_intent(self, row: CheckoutRow, events: list[Event]) -> None:
        """Put the pending step in flight, keeping the lease: its call comes next."""
        row.in_flight = True
        events = [*events, Event("step_started", step=row.pending_step, attempt=row.attempt)]
        await self.write(row, events, keep_lease=True, start_step=True)

    async def release(
        self,
        row: CheckoutRow,
        events: list[Event],
        *,
        due_in: float,
    ) -> None:
        """Write the row and give up its lease; it is due again in `due_in` seconds."""
        await self.write(row, events, keep_lease=False, due_in=due_in)

    async def write(
        self,
        row: CheckoutRow,
        events: list[Event],
        *,
        keep_lease: bool,
        start_step: bool = False,
        due_in: float | None = None,
        terminal: bool = False,
        behind_of: str | None = None,
    ) -> None:
        """Write the row; with `behind_of` (the step whose outcome this is), start the write and
        return, leaving it to run behind the next call (`settle` waits for it)."""
        await self.settle(row)  # writes of one row land in order
        write = self.repo.write(
            row,
            events,
            worker=self.worker,
            lease_seconds=self.lease_seconds,
            keep_lease=keep_lease,
            start_step=start_step,
            send_seconds=self.send_window if start_step else None,
            due_in=due_in,
            terminal=terminal,
        )
        if behind_of is not None:
            self.behind.start(row, behind_of, write)
            return
        try:
            await write
        except LeaseLost:
            log.warning("checkout %s: lease lost, late write refused", row.id)
            raise

    async def settle(self, row: CheckoutRow) -> None:
        """Wait for the row's write running behind a call, if any (raises what it raised)."""
        await self.behind.settle(row)


def _close_step(
    model: machine.CheckoutModel,
    row: CheckoutRow,
    step: str,
    outcome: Advance | Park,
    events: list[Event],
) -> None:
    """Fire the outcome's transition and close the step with its audit event, which keeps what
    the step's cart summed to (the row keeps only the latest)."""
    before = row.state
    row.state = machine.fire(model, outcome.trigger)
    detail = outcome.detail if isinstance(outcome, Advance) else {"reason": outcome.reason}
    cart = cart_summary(outcome.cart)
    if cart is not None:
        detail = {**(detail or {}), "cart": cart}
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
    row.step_no += 1
    row.last_error = None
    row.in_flight = False
