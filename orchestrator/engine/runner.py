"""Drive leased checkouts through their steps under the step protocol (design §3).

The runner holds what every drive shares: the Violet client, the row writes (recorder.py), the
retry policy and the timing windows derived from the client's timeouts. One drive's progress
lives in drive.py; the shopper's own moves on a leased checkout (confirm, cancel) are here,
since they write the same row under the same lease but take no step.
"""

from __future__ import annotations

from orchestrator import states
from orchestrator.engine import machine
from orchestrator.engine.crashpoints import CrashPoints
from orchestrator.engine.drive import Drive, DriveResult
from orchestrator.engine.events import call_events, error_event
from orchestrator.engine.leases import LeaseKeeper
from orchestrator.engine.ports import EngineStore
from orchestrator.engine.recorder import Recorder
from orchestrator.engine.retries import RetryPolicy
from orchestrator.engine.steps import error_summary
from orchestrator.states import CANCEL, CONFIRM, CREATE_CART, SUBMIT
from orchestrator.store.budgets import MerchantBudgets
from orchestrator.store.records import CheckoutRow, Event
from orchestrator.violet import (
    CardPayment,
    OrderStatus,
    VioletClient,
    VioletError,
    capture_calls,
)

__all__ = ["DriveResult", "RetryPolicy", "Runner", "step_after"]


def step_after(row: CheckoutRow) -> str | None:
    """The Violet step a checkout in `row.state` needs next (None: terminal or waiting)."""
    return states.step_after(row.state, row.needs_shipping)


class Runner:
    """Runs steps for leased checkouts; stateless apart from its collaborators."""

    def __init__(
        self,
        repo: EngineStore,
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
        budgets: MerchantBudgets | None = None,
        budget_wait: float = 2.0,
    ) -> None:
        self.client = client
        #: The merchants' shared rate budgets (None: only the global throttle), and the longest
        #: a call waits in-process for its turn before its checkout is deferred instead.
        self.budgets = budgets
        self.budget_wait = budget_wait
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
        #: Between two overwrite steps, write an outcome behind the next call (write_behind.py).
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
            with machine.attached(row.state) as model:
                drive = Drive(self, row, model, card, intent_committed=intent_committed)
                return await drive.run()
        finally:
            await self.recorder.settle(row)

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
        await self.recorder.write(row, events, keep_lease=True)

    async def note_request(self, row: CheckoutRow, kind: str, actor: str) -> None:
        """Record who asked for what on a leased checkout (an operator's "run now"), changing
        nothing else; the lease is kept for the drive that follows."""
        await self.recorder.write(row, [Event(kind, detail={"actor": actor})], keep_lease=True)

    async def cancel(self, row: CheckoutRow, *, actor: str | None = None) -> None:
        """Cancel a leased checkout, releasing its Violet cart when it was never submitted;
        `actor` (who asked) is named in the `canceled` event.

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
                detail={
                    "violet_cart_released": released,
                    **({"actor": actor} if actor is not None else {}),
                },
            ),
            Event("transition", from_state=before, to_state=row.state, step=CANCEL),
        ]
        await self.recorder.write(row, events, keep_lease=False, terminal=True)

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
