"""A `Runner` wired to the in-memory store and the built-in sandbox's in-process ASGI app: the
engine's decisions with no database and no socket.

`EngineHarness.start` does what `Orchestrator.start` does before driving (insert the checkout
leased with its first step in flight), and `resume` what `Orchestrator.run` does for a row
whose retry fell due (claim it, then drive it with its outcome unknown first reconciled).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette

from orchestrator import states
from orchestrator.engine.crashpoints import CrashPoints
from orchestrator.engine.runner import DriveResult, RetryPolicy, Runner
from orchestrator.request import CardPaymentRequest, CheckoutRequest
from orchestrator.sandbox import SANDBOX_CREDENTIALS, asgi_transport, create_app
from orchestrator.sandbox.state import SandboxState
from orchestrator.store.records import CheckoutRow, Event
from orchestrator.violet import CardPayment, VioletClient
from tests.fakes.repository import FakeClock, FakeRepository

WORKER = "worker-a"
LEASE_SECONDS = 30.0
SETTLE_SECONDS = 0.3


def card_of(payment: CardPaymentRequest) -> CardPayment:
    return CardPayment(
        card_number=payment.card_number,
        card_cvc=payment.card_cvc,
        card_exp_month=payment.card_exp_month,
        card_exp_year=payment.card_exp_year,
        card_postal_code=payment.card_postal_code,
    )


def violet_client(app: Starlette) -> VioletClient:
    """Violet's client against the in-process sandbox; reads are not retried inline, so a fault
    injected on one call is seen by the runner."""
    return VioletClient(
        base_url="http://sandbox/v1",
        app_id=int(SANDBOX_CREDENTIALS["app_id"]),
        app_secret=str(SANDBOX_CREDENTIALS["app_secret"]),
        username=str(SANDBOX_CREDENTIALS["username"]),
        password=str(SANDBOX_CREDENTIALS["password"]),
        transport=asgi_transport(app),
        read_retries=0,
        total_timeout=5.0,
        read_timeout=5.0,
    )


@dataclass
class EngineHarness:
    """One test's store, sandbox and runner."""

    clock: FakeClock = field(default_factory=FakeClock)
    app: Starlette = field(default_factory=create_app)
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(base=1.0, cap=300.0))

    def __post_init__(self) -> None:
        self.store = FakeRepository(self.clock)
        self.client = violet_client(self.app)
        self.runner = self.runner_for(WORKER)

    def runner_for(self, worker: str, *, crash: CrashPoints | None = None) -> Runner:
        return Runner(
            self.store,
            self.client,
            worker=worker,
            lease_seconds=LEASE_SECONDS,
            settle_seconds=SETTLE_SECONDS,
            retry=self.retry,
            max_recoveries=3,
            outcome_wait=0.0,
            crash=crash,
        )

    @property
    def sandbox(self) -> SandboxState:
        state: SandboxState = self.app.state.sandbox
        return state

    def fault(self, op: str, kind: str, **spec: Any) -> None:
        """Arm a sandbox fault on the next call of `op` (faults.py)."""
        self.sandbox.faults.add({"op": op, "kind": kind, **spec})

    async def insert(self, request: dict[str, Any]) -> CheckoutRow:
        req = CheckoutRequest.parse(request)
        row = CheckoutRow.registered(
            app_order_id=req.app_order_id,
            request=req.persisted(),
            payment_kind=req.payment.type,
            currency=req.currency,
            first_step=states.CREATE_CART,
            run=True,
        )
        events = [
            Event("created", to_state=states.INITIAL),
            Event("step_started", step=states.CREATE_CART, attempt=1),
        ]
        inserted = await self.store.insert(
            row,
            events,
            worker=WORKER,
            lease_seconds=LEASE_SECONDS,
            leased=True,
            send_seconds=self.runner.send_window,
        )
        assert inserted is not None
        return inserted

    async def start(self, request: dict[str, Any], *, card: bool = True) -> DriveResult:
        """Insert and drive a checkout; a card request's card is held unless `card` is False."""
        row = await self.insert(request)
        payment = CheckoutRequest.parse(request).payment
        held = card_of(payment) if card and isinstance(payment, CardPaymentRequest) else None
        return await self.runner.drive(row, card=held, intent_committed=True)

    async def resume(self, checkout_id: uuid.UUID, *, worker: str = WORKER) -> DriveResult:
        """Once its due time has come: claim the checkout and drive it on."""
        stored = await self.store.get(checkout_id)
        assert stored is not None and stored.next_attempt_at is not None
        self.clock.now = max(self.clock.now, stored.next_attempt_at)
        claim = await self.store.claim(checkout_id, worker=worker, lease_seconds=LEASE_SECONDS)
        return await self.runner_for(worker).drive(claim.row, intent_committed=False)

    async def trail(self, checkout_id: uuid.UUID) -> list[tuple[Any, ...]]:
        """The audit trail as (kind, step, from, to) with the Violet calls left out."""
        return [
            (e["kind"], e["step"], e["from_state"], e["to_state"])
            for e in await self.store.events(checkout_id)
            if e["kind"] != "violet_call"
        ]

    async def aclose(self) -> None:
        await self.client.aclose()


class AtPoint(CrashPoints):
    """Crash points that run `action` at one named point instead of killing the process."""

    def __init__(self, point: str, action: Callable[[], None]) -> None:
        super().__init__(enabled=False)
        self.point = point
        self.action = action
        self.reached = 0

    def hit(self, point: str) -> None:
        if point == self.point:
            self.reached += 1
            self.action()
