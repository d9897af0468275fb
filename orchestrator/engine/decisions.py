"""What a step sees and what it decides (design §3): the context a step reads, the decisions it
returns for the runner to apply, how a drive reads an unsettled submit again, and what is kept
of an error. The steps themselves are in `cart_steps` and `order_steps`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.violet import (
    CardPayment,
    Cart,
    VioletAuthError,
    VioletClient,
    VioletError,
)
from orchestrator.violet.errors import CARD_DECLINED, decline_in


@dataclass(slots=True)
class StepContext:
    """What a step may look at: the client, the stored request, and in-memory-only card data."""

    client: VioletClient
    state: str
    request: Mapping[str, Any]
    app_order_id: str
    violet_order_id: int | None
    #: Seconds since the step's start on the database's clock (records.py `step_age`).
    step_age: Callable[[], float]
    #: From the step's start, how long an unanswered attempt may still be running at Violet:
    #: until its sender's send bound (two calls' total timeouts) plus the submit settle time.
    settle_window: float
    card: CardPayment | None = None
    #: The cart as Violet last returned it during this drive (None after a resume).
    last_cart: Cart | None = None
    #: Secrets handed to the caller (payment intent client secret); never persisted or logged.
    handout: dict[str, str] = field(default_factory=dict)
    #: This drive already read a submitted order as not settled (`Pending`) and reads it again.
    reading_outcome: bool = False
    #: No read of an unsettled submit is left: record what Violet shows now (see `Submit.judge`).
    last_read: bool = False

    def cart_id(self) -> int:
        if self.violet_order_id is None:
            raise RuntimeError("step needs a Violet cart but none is recorded")
        return self.violet_order_id


@dataclass(frozen=True, slots=True)
class Advance:
    """The step is done: fire `trigger` and record the cart."""

    trigger: str
    cart: Cart | None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Park:
    """Wait for outside input in the state `trigger` leads to."""

    trigger: str
    reason: str
    cart: Cart | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    """Permanent failure: no retry will help."""

    error: dict[str, Any]
    cart: Cart | None = None


@dataclass(frozen=True, slots=True)
class Redo:
    """Reconciliation found the step not done: call Violet again."""

    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Defer:
    """Reconciliation cannot tell yet (a first attempt may still be running): look again later."""

    seconds: float
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Pending:
    """Violet took the submit but has not settled its bags yet (order PROCESSING, bags
    SUBMITTED): an outcome not yet known. The runner records the cart and reads it again."""

    cart: Cart
    detail: dict[str, Any]


Outcome = Advance | Park | Fail
Answer = Outcome | Pending
Decision = Advance | Park | Fail | Redo | Defer | Pending

#: The first gap between two reads of an unsettled submit; each next gap is twice the last.
FIRST_OUTCOME_READ_GAP = 0.5


@dataclass(slots=True)
class OutcomeReads:
    """How one drive reads again a submit Violet has not settled: gaps of 0.5 s, 1 s, 2 s, ...
    until `wait` seconds have passed in all (the last gap is cut to fit), then a last read."""

    wait: float
    reads: int = 0
    waited: float = 0.0

    @property
    def started(self) -> bool:
        return self.reads > 0

    @property
    def exhausted(self) -> bool:
        return self.waited >= self.wait

    def next_gap(self) -> float:
        doubled: float = FIRST_OUTCOME_READ_GAP * 2**self.reads
        gap = min(doubled, max(self.wait - self.waited, 0.0))
        self.reads += 1
        self.waited += gap
        return gap


def error_summary(exc: BaseException, step: str | None = None) -> dict[str, Any]:
    """What is kept of an error: class, Violet's type, a redacted message, the HTTP status.

    A decline is typed `card_declined` wherever Violet put it (its own type, or a
    `decline_code` in `errors[]`), with Violet's type and the reason kept beside it."""
    if isinstance(exc, VioletAuthError) and exc.credentials_refused:
        # Our configuration, not this checkout: it waits for the credentials to be fixed.
        return {
            "class": "config",
            "type": "credentials_refused",
            "message": str(exc)[:500],
            "status": exc.status,
            "step": step,
        }
    if isinstance(exc, VioletError):
        summary = {
            "class": exc.classification,
            "type": exc.error_type or type(exc).__name__,
            "message": str(exc)[:500],
            "status": exc.status,
            "step": step,
        }
        if exc.decline_code is not None:
            as_decline(summary, exc.decline_code)
        return summary
    return {
        "class": "internal",
        "type": type(exc).__name__,
        "message": str(exc)[:500],
        "step": step,
    }


def cart_errors(cart: Cart, step: str, message: str | None = None) -> dict[str, Any]:
    first = cart.errors[0] if cart.errors else None
    summary = {
        "class": "permanent",
        "type": (first.type if first else None) or "rejected",
        "message": message or (first.message if first else None) or "Violet refused the cart",
        "status": 200,
        "step": step,
    }
    decline = decline_in({"errors": [e.model_dump() for e in cart.errors]})
    if decline is not None:
        as_decline(summary, decline)
    return summary


def as_decline(summary: dict[str, Any], decline_code: str) -> None:
    summary["violet_type"] = summary["type"]
    summary["decline_code"] = decline_code
    summary["type"] = CARD_DECLINED


def settle_or_redo(ctx: StepContext, detail: dict[str, Any]) -> Redo | Defer:
    """An attempt that started less than the settle window ago may still be running at Violet
    (it may have been sent until the client gave up, and be applied a settle time later): wait."""
    remaining = ctx.settle_window - ctx.step_age()
    if remaining > 0:
        return Defer(remaining, {**detail, "settle_remaining_s": round(remaining, 3)})
    return Redo(detail)


class Step:
    """Base: by default a step has overwrite semantics, so reconciling means doing it again."""

    name: str = ""

    async def call(self, ctx: StepContext) -> Answer:
        raise NotImplementedError

    async def reconcile(self, ctx: StepContext) -> Decision:
        return Redo({"rule": "overwrite: re-applying is safe"})

    def paces_first_call(self, ctx: StepContext) -> bool:
        """Whether `call`'s first request reaches the merchants' platforms (`Op.platform`), so
        its turn on their budgets may be taken before the intent is written (engine/drive.py
        `_start`). A step that first reads Violet's own record, or may make no call, says no:
        a turn taken early would be spent late, or not at all."""
        return True
