"""What an operator may do from the console, declared once as a table.

Each `Action` says what its button and its confirmation read, which checkouts it is offered
for, how it is done through the library's front door (with the operator as the actor, so the
audit trail names them), and whether it can run over a filter (bulk), with which restriction of
the filter its candidates come from. The pages, the routes and the bulk dry run are all driven
by `ACTIONS`: adding an action is one more entry.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from orchestrator import states
from orchestrator.checkout import Checkout
from orchestrator.engine.retry_rules import error_refusal

if TYPE_CHECKING:
    from orchestrator.api import Orchestrator

__all__ = ["ACTIONS", "Action", "Ask"]


@dataclass(frozen=True, slots=True)
class Ask:
    """What the operator confirmed: who, and the reason they typed (when the action asks one)."""

    actor: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """One operator action."""

    name: str  # in URLs: /checkouts/{id}/{name}, /bulk/{name}
    label: str  # its button
    question: str  # the confirmation's title
    consequence: str  # what it does, in one or two sentences
    done: str  # the notice after it
    #: None when the action is offered for this checkout, else why not (shown on a dry run).
    refusal: Callable[[Checkout], str | None]
    perform: Callable[[Orchestrator, uuid.UUID, Ask], Awaitable[Checkout]]
    #: `audit.list_checkouts` filters a bulk run adds to the operator's (None: no bulk run).
    bulk_scope: dict[str, Any] | None = None
    asks_reason: bool = False
    #: Emphasis of its button: "danger" for what cannot be undone.
    tone: str = "normal"
    #: How a bulk run does it, when not as `perform` (a bulk retry reopens and leaves the
    #: driving to the recovery job rather than holding the request open for every checkout).
    bulk_perform: Callable[[Orchestrator, uuid.UUID, Ask], Awaitable[Checkout]] | None = None

    @property
    def perform_in_bulk(self) -> Callable[[Orchestrator, uuid.UUID, Ask], Awaitable[Checkout]]:
        return self.bulk_perform or self.perform

    def offered(self, checkout: Checkout) -> bool:
        return self.refusal(checkout) is None


def _cancel_refusal(checkout: Checkout) -> str | None:
    if not states.is_cancelable(checkout.state):
        return f"{checkout.state}: cannot be canceled"
    if checkout.in_flight and checkout.pending_step == states.SUBMIT:
        return "a submit may be running at Violet: let recovery settle it first"
    return None


def _run_refusal(checkout: Checkout) -> str | None:
    if checkout.is_terminal:
        return f"{checkout.state}: nothing left to run"
    if checkout.pending_step is None and not checkout.in_flight:
        return f"{checkout.state}: waits for input, not for a run"
    return None


def _retry_refusal(checkout: Checkout) -> str | None:
    return error_refusal(checkout.state, checkout.last_error)


async def _retry(orch: Orchestrator, ref: uuid.UUID, ask: Ask) -> Checkout:
    return await orch.retry(ref, actor=ask.actor, reason=ask.reason)


async def _reopen(orch: Orchestrator, ref: uuid.UUID, ask: Ask) -> Checkout:
    return await orch.retry(ref, actor=ask.actor, reason=ask.reason, run=False)


async def _cancel(orch: Orchestrator, ref: uuid.UUID, ask: Ask) -> Checkout:
    return await orch.cancel(ref, actor=ask.actor)


async def _run(orch: Orchestrator, ref: uuid.UUID, ask: Ask) -> Checkout:
    return await orch.run(ref, actor=ask.actor)


CANCEL: Final = Action(
    name="cancel",
    label="Cancel",
    question="Cancel this checkout?",
    consequence=(
        "The checkout ends as canceled and its Violet cart, if it was never submitted, is "
        "released. A canceled checkout cannot be resumed."
    ),
    done="Canceled.",
    refusal=_cancel_refusal,
    perform=_cancel,
    bulk_scope={"unfinished": True},
    tone="danger",
)

RUN_NOW: Final = Action(
    name="run",
    label="Run now",
    question="Run this checkout now?",
    consequence=(
        "Its pending step is driven at once, without waiting for a scheduled retry. A step "
        "whose outcome is unknown is reconciled with Violet first: nothing is sent twice."
    ),
    done="Ran.",
    refusal=_run_refusal,
    perform=_run,
)

RETRY: Final = Action(
    name="retry",
    label="Retry",
    question="Retry this failed checkout?",
    consequence=(
        "It reopens at the step that failed and reads Violet before it redoes anything: an "
        "order Violet already holds is recorded as submitted, never submitted again, and a cart "
        "Violet already made is adopted. A failure that is Violet's final word (a declined card, "
        "an item out of stock) is not offered. A bulk retry reopens each checkout and leaves it "
        "due now for the recovery job."
    ),
    done="Retried.",
    refusal=_retry_refusal,
    perform=_retry,
    bulk_perform=_reopen,
    bulk_scope={"state": states.FAILED},
    asks_reason=True,
)

#: Every action, in the order their buttons appear.
ACTIONS: Final[dict[str, Action]] = {a.name: a for a in (RETRY, RUN_NOW, CANCEL)}
