"""`Orchestrator`: the library's front door (async). A sync facade lives in `orchestrator.sync`.

It composes the store, the Violet client, the runner and the lease keeper into one `Worker`
(shared with the jobs); card data is held in memory only, for as long as the checkout has not
passed payment: a card is dropped whenever its checkout is read past payment (or gone), and at
every card start for all held cards at once.

Its parts: `wiring` builds the worker, `guards` holds the commands' refusals, and the class gains
the changes feed (`feed`), a bag's cancel and refund (`bags`) and the retry of failed checkouts
(`retry`) from mixins.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import states
from orchestrator.api import wiring
from orchestrator.api.bags import BagCommands
from orchestrator.api.feed import ChangesFeed
from orchestrator.api.guards import (
    check_actor,
    check_awaiting_payment,
    check_cancelable,
    check_confirmable,
    nothing_to_drive,
    unconfirmed_intent_status,
)
from orchestrator.api.retry import RetryCommands
from orchestrator.api.wiring import default_worker_id
from orchestrator.checkout import AuditEvent, Checkout
from orchestrator.config import Settings, load_settings
from orchestrator.engine.crashpoints import CrashPoints
from orchestrator.engine.leases import LeaseKeeper
from orchestrator.engine.runner import Runner
from orchestrator.engine.worker import Worker
from orchestrator.errors import (
    CheckoutConflict,
    CheckoutNotFound,
    DatabaseUnavailable,
    IllegalTransition,
    PaymentNotConfirmed,
)
from orchestrator.request import CardPaymentRequest, CheckoutRequest
from orchestrator.states import APPLY_PAYMENT, CREATE_CART
from orchestrator.store import database
from orchestrator.store.records import CheckoutRow, Event
from orchestrator.store.repository import Repository
from orchestrator.violet import CardPayment, VioletClient, VioletError

log = logging.getLogger(__name__)

#: The longest a closing orchestrator spends counting the calls let through on trust.
_FLUSH_ON_CLOSE_S = 2.0


class Orchestrator(ChangesFeed, BagCommands, RetryCommands):
    """Start, drive, inspect, cancel, resume and retry checkouts.

    ``async with Orchestrator(settings) as orch: checkout = await orch.start(request)``.
    Pass ``violet_transport`` (e.g. the built-in sandbox's ASGI transport) to talk to Violet
    in-process, and ``engine`` to share the host application's SQLAlchemy engine.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        violet_transport: httpx.AsyncBaseTransport | None = None,
        engine: AsyncEngine | None = None,
        client: VioletClient | None = None,
        worker_id: str | None = None,
        crash: CrashPoints | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.worker_id = worker_id or default_worker_id()
        self._transport = violet_transport
        self._engine = engine
        self._owns_engine = engine is None
        self._client = client
        self._owns_client = client is None
        self._crash = crash
        # The worker's card memory (the same dict), here before open() builds the worker.
        self._cards: dict[uuid.UUID, CardPayment] = {}
        self._worker: Worker | None = None
        self._pool: AsyncConnectionPool | None = None
        self._opened = False

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> Orchestrator:
        """Connect to the database (checking its schema) and prepare the Violet client."""
        if self._opened:
            return self
        if self._client is None:
            self.settings.require_violet_credentials()
            self._client = VioletClient.from_settings(self.settings, transport=self._transport)
        if self._engine is None:
            url = await asyncio.to_thread(wiring.database_url, self.settings)
            self._engine = wiring.create_engine(self.settings, url)
        await database.check_schema(self._engine)
        self._pool = await wiring.open_pool(self.settings, self._engine)
        self._worker = wiring.build_worker(
            self.settings,
            worker_id=self.worker_id,
            engine=self._engine,
            pool=self._pool,
            client=self._client,
            cards=self._cards,
            crash=self._crash,
        )
        self._opened = True
        return self

    async def close(self) -> None:
        if not self._opened:
            return
        await self.leases.close()
        await self.repo.drain()
        if self.worker.runner.budgets is not None:
            # Bounded: a database that is down must not hold the process's exit, for a statistic.
            await self.worker.runner.budgets.flush_quietly(_FLUSH_ON_CLOSE_S)
        if self._pool is not None:
            await self._pool.close()
        if self._owns_client and self._client is not None:
            await self._client.aclose()
        if self._owns_engine and self._engine is not None:
            await self._engine.dispose()
        self._opened = False

    async def __aenter__(self) -> Orchestrator:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "call open() first"
        return self._engine

    @property
    def client(self) -> VioletClient:
        assert self._client is not None, "call open() first"
        return self._client

    @property
    def worker(self) -> Worker:
        """The repository, client, lease keeper and runner, for the jobs (`recovery`, `verify`)."""
        assert self._worker is not None, "call open() first"
        return self._worker

    @property
    def repo(self) -> Repository:
        return self.worker.repo

    @property
    def leases(self) -> LeaseKeeper:
        return self.worker.leases

    @property
    def runner(self) -> Runner:
        return self.worker.runner

    async def migrate(self) -> None:
        """Apply the orchestrator's migrations to its database (idempotent)."""
        url = await asyncio.to_thread(database.resolve_database_url, self.settings)
        await asyncio.to_thread(database.migrate, url)

    # -- commands -----------------------------------------------------------------------

    async def start(
        self, request: CheckoutRequest | dict[str, Any], *, run: bool = True
    ) -> Checkout:
        """Register a checkout and (by default) drive it to a terminal or waiting state.

        One checkout per app_order_id: starting the same request again returns the existing
        checkout and creates no second cart; a different request under a used app_order_id
        raises `CheckoutConflict` and changes nothing (requests are compared as stored: a card
        by its last four digits). With ``run=False`` it is only registered, due now, for
        `run()` or the recovery job.
        """
        req = CheckoutRequest.parse(request)
        row = CheckoutRow.registered(
            app_order_id=req.app_order_id,
            request=req.persisted(),
            payment_kind=req.payment.type,
            currency=req.currency,
            first_step=CREATE_CART,
            run=run,
        )
        events = [
            Event(
                "created",
                to_state=states.INITIAL,
                detail={"app_order_id": req.app_order_id, "payment_kind": req.payment.type},
            )
        ]
        if run:
            events.append(Event("step_started", step=CREATE_CART, attempt=1))
        if isinstance(req.payment, CardPaymentRequest) and self._cards:
            await self.worker.forget_cards_past_payment()
        try:
            inserted = await self.repo.insert(
                row,
                events,
                worker=self.worker_id,
                lease_seconds=self.settings.lease_seconds,
                leased=run,
                send_seconds=self.runner.send_window,
            )
        except Exception as exc:
            if not database.is_database_error(exc):
                raise
            raise DatabaseUnavailable(
                f"database unavailable ({database.error_reason(exc)}); checkout "
                f"{req.app_order_id} may not be registered: starting it again is safe (one "
                "checkout per app_order_id)"
            ) from exc
        if inserted is None:
            return Checkout.from_row(await self._existing(req))
        if isinstance(req.payment, CardPaymentRequest):
            self._cards[inserted.id] = wiring.card_payment(req.payment)
        if not run:
            return Checkout.from_row(inserted)
        return await self.drive_claimed(inserted, intent_committed=True)

    async def _existing(self, req: CheckoutRequest) -> CheckoutRow:
        """The checkout already holding `req`'s app_order_id, if it was started with `req`."""
        row = await self.repo.get_by_app_order_id(req.app_order_id)
        if row is None:  # inserted and gone again: checkouts are never deleted
            raise CheckoutNotFound(f"no checkout with app_order_id {req.app_order_id}")
        differences = req.differences(row.request)
        if differences:
            raise CheckoutConflict(req.app_order_id, row.id, differences)
        return row

    async def run(
        self, ref: uuid.UUID | str, *, retry_wait: float = 0.0, actor: str | None = None
    ) -> Checkout:
        """Drive a checkout as far as it can go now.

        A retryable Violet error schedules the next attempt in the row and returns; with
        ``retry_wait`` > 0 this call waits (holding nothing) for attempts due within that many
        seconds and goes on, which suits a caller that wants an answer rather than a schedule.
        With ``actor`` (an operator's "run now") a retry scheduled for later is not waited for:
        the checkout is driven at once, after a `run_requested` event naming the actor.
        """
        check_actor(actor)
        deadline = asyncio.get_running_loop().time() + retry_wait
        while True:
            row = await self._row(ref)
            if nothing_to_drive(row):
                return Checkout.from_row(row)
            if actor is None and row.next_attempt_at is not None and row.lease_owner is None:
                wait = (row.next_attempt_at - datetime.now(UTC)).total_seconds()
                if wait > 0:
                    if asyncio.get_running_loop().time() + wait > deadline:
                        return Checkout.from_row(row)
                    await asyncio.sleep(wait)
            claimed = await self._claim(row)
            if nothing_to_drive(claimed):  # another worker got there between read and claim
                await self._give_back(claimed)
                return Checkout.from_row(claimed)
            if actor is not None:
                await self.runner.note_request(claimed, "run_requested", actor)
                actor = None  # asked once: a later turn of the loop is this call's own wait
            checkout = await self.drive_claimed(claimed, intent_committed=False)
            if checkout.is_terminal or checkout.pending_step is None or retry_wait <= 0:
                return checkout
            if asyncio.get_running_loop().time() >= deadline:
                return checkout
            ref = checkout.id

    async def drive_claimed(self, row: CheckoutRow, *, intent_committed: bool) -> Checkout:
        """Drive a checkout whose lease this orchestrator holds."""
        result = await self.worker.drive(row, intent_committed=intent_committed)
        return Checkout.from_row(
            row, result.handout, credentials_refused=result.credentials_refused
        )

    async def cancel(self, ref: uuid.UUID | str, *, actor: str | None = None) -> Checkout:
        """Cancel a non-terminal checkout, releasing its Violet cart if it was never submitted.

        ``actor`` (who asked: an operator, a support tool) is named in the `canceled` event."""
        check_actor(actor)
        row = await self._row(ref)
        self._check_cancelable(row)  # before the claim: a refusal takes no lease over
        row = await self._claim_while(row, self._check_cancelable)
        with self.leases.holding(row.id):
            await self.runner.cancel(row, actor=actor)
        self._cards.pop(row.id, None)
        return Checkout.from_row(row)

    async def _claim_while(
        self, row: CheckoutRow, check: Callable[[CheckoutRow], None]
    ) -> CheckoutRow:
        """Take the lease, then `check` the row again as claimed: it may have moved since it was
        read (a concurrent cancel, a retry that fell due). A refused claim is handed back."""
        claimed = await self._claim(row)
        try:
            check(claimed)
        except IllegalTransition:
            await self._give_back(claimed)
            raise
        return claimed

    async def _claim(self, row: CheckoutRow) -> CheckoutRow:
        claim = await self.repo.claim(
            row.id, worker=self.worker_id, lease_seconds=self.settings.lease_seconds
        )
        self.worker.forget_card_if_past_payment(claim.row)
        return claim.row

    async def _give_back(self, claimed: CheckoutRow) -> None:
        """Release a lease taken for nothing (a terminal row came back without one)."""
        if claimed.lease_owner == self.worker_id:
            due_in = None if claimed.pending_step is None else 0.0
            await self.leases.release(claimed, due_in=due_in)

    def _check_cancelable(self, row: CheckoutRow) -> None:
        check_cancelable(row)
        if row.in_flight and row.pending_step == CREATE_CART and row.step_started_at is not None:
            # Violet may still be making the cart: a search now would miss it, and it would be
            # left behind. Once the window has passed, cancel finds and releases it.
            remaining = self.runner.settle_window_of(row) - row.step_age()
            if remaining > 0:
                raise IllegalTransition(
                    "create_cart may still be running at Violet; cancel again in "
                    f"{remaining:.0f} s (its cart is then found and released)"
                )

    async def confirm_payment(self, ref: uuid.UUID | str) -> Checkout:
        """The shopper confirmed the payment (intent or 3-D Secure): price and submit.

        Violet is re-read before any new submit, so a confirmation that arrives twice, or after
        Violet already completed the order, never submits twice.
        """
        row = await self._row(ref)
        check_confirmable(row)
        if row.state == states.AWAITING_CONFIRMATION and row.violet_order_id is not None:
            # Submitting an unconfirmed intent would fail the checkout for good: ask Violet first.
            cart = await self.client.get_cart(row.violet_order_id)
            pending = unconfirmed_intent_status(cart)
            if pending is not None:
                raise PaymentNotConfirmed(
                    f"the shopper has not confirmed the payment yet (Violet shows the intent "
                    f"as {pending}); nothing was changed"
                )
        row = await self._claim_while(row, check_confirmable)
        resume_step = states.step_after_confirm(row.state)
        with self.leases.holding(row.id):
            await self.runner.confirm(row, resume_step)
        return await self.drive_claimed(row, intent_committed=False)

    async def provide_payment(
        self, ref: uuid.UUID | str, payment: CardPaymentRequest | dict[str, Any]
    ) -> Checkout:
        """Give card data again to a checkout waiting in `awaiting_payment`, and drive it on."""
        card = CardPaymentRequest.parse(payment)
        row = await self._row(ref)
        check_awaiting_payment(row)
        row = await self._claim_while(row, check_awaiting_payment)
        self._cards[row.id] = wiring.card_payment(card)
        row.pending_step = APPLY_PAYMENT
        row.waiting_reason = None
        return await self.drive_claimed(row, intent_committed=False)

    async def payment_secret(self, ref: uuid.UUID | str) -> dict[str, str]:
        """The payment intent client secret and Stripe key for the shopper's front end.

        Read from Violet on demand, never stored (Stripe's rule for client secrets).
        """
        row = await self._row(ref)
        if row.violet_order_id is None:
            raise IllegalTransition("the checkout has no Violet cart yet")
        cart = await self.client.get_cart(row.violet_order_id)
        secret = cart.payment_intent_client_secret
        handout = {"stripe_key": cart.stripe_key or ""}
        if secret is not None:
            handout["payment_intent_client_secret"] = secret.get_secret_value()
        return handout

    # -- queries ------------------------------------------------------------------------

    async def get(self, ref: uuid.UUID | str) -> Checkout:
        """A checkout by id, app_order_id or Violet order id."""
        return Checkout.from_row(await self._row(ref))

    async def history(self, ref: uuid.UUID | str) -> list[AuditEvent]:
        """The checkout's audit trail, oldest first."""
        row = await self._row(ref)
        return [AuditEvent.from_mapping(e) for e in await self.repo.events(row.id)]

    async def _row(self, ref: uuid.UUID | str) -> CheckoutRow:
        row = await self.repo.get(ref)
        if row is None:
            raise CheckoutNotFound.for_ref(ref)  # never repeats a card number given as a ref
        self.worker.forget_card_if_past_payment(row)
        return row


__all__ = ["Orchestrator", "VioletError", "default_worker_id"]
