"""The checkout state graph, declared once: states, edges and their triggers, the step after each.

Everything that knows the graph asks this module: the `transitions` machine is built from
`EDGES` (`engine.machine`), the store's CHECK list and its SQL state lists are generated from it,
the runner reads which step follows a state, and the front door asks the named predicates whether
a cancel, a confirmation, a card or a retry is legal now. The migrations hold frozen copies of the
same graph (the `checkout_state_transitions` table, the `ck_checkouts_state` CHECK); a test
compares them with this declaration. Plain data and pure functions, importing nothing from the
project, so `store/` may import it as well as the engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

# -- states -------------------------------------------------------------------------------------

NEW: Final = "new"
CREATED: Final = "created"
CUSTOMER_APPLIED: Final = "customer_applied"
SHIPPING_APPLIED: Final = "shipping_applied"
PAID: Final = "paid"
AWAITING_PAYMENT: Final = "awaiting_payment"
AWAITING_CONFIRMATION: Final = "awaiting_confirmation"
PRICED: Final = "priced"
REQUIRES_ACTION: Final = "requires_action"
SUBMITTED: Final = "submitted"
FAILED: Final = "failed"
CANCELED: Final = "canceled"

#: Every state, in the order of a checkout's walk (the order SQL lists and the diagram use).
STATES: Final[tuple[str, ...]] = (
    NEW,
    CREATED,
    CUSTOMER_APPLIED,
    SHIPPING_APPLIED,
    PAID,
    AWAITING_PAYMENT,
    AWAITING_CONFIRMATION,
    PRICED,
    REQUIRES_ACTION,
    SUBMITTED,
    FAILED,
    CANCELED,
)
#: Where every checkout starts (the database's guard refuses an insert in any other state).
INITIAL: Final = NEW
TERMINAL_STATES: Final = frozenset({SUBMITTED, FAILED, CANCELED})
#: States that wait for outside input (shopper or backend); recovery does not spin on them.
WAITING_STATES: Final = frozenset({AWAITING_PAYMENT, AWAITING_CONFIRMATION, REQUIRES_ACTION})
NON_TERMINAL_STATES: Final = tuple(s for s in STATES if s not in TERMINAL_STATES)

# -- triggers -----------------------------------------------------------------------------------
# A Violet step is named after the trigger its success fires (the step `price` fires `price`).

CREATE_CART: Final = "create_cart"
APPLY_CUSTOMER: Final = "apply_customer"
APPLY_SHIPPING: Final = "apply_shipping"
APPLY_PAYMENT: Final = "apply_payment"
REQUEST_CONFIRMATION: Final = "request_confirmation"
NEED_PAYMENT: Final = "need_payment"
PROVIDE_PAYMENT: Final = "provide_payment"
CONFIRM: Final = "confirm"
PRICE: Final = "price"
SUBMIT: Final = "submit"
REQUIRE_ACTION: Final = "require_action"
FAIL: Final = "fail"
CANCEL: Final = "cancel"
#: An operator reopens a failed checkout where it failed (the one trigger with several ends).
RETRY: Final = "retry"


@dataclass(frozen=True, slots=True)
class Edge:
    """`trigger` moves a checkout from any of `sources` to `dest`."""

    trigger: str
    sources: tuple[str, ...]
    dest: str


_BEFORE_PAYMENT = (CUSTOMER_APPLIED, SHIPPING_APPLIED)

#: The states a step runs in (the step after each, or `apply_payment` once card data is given
#: again in `awaiting_payment`): the only states a checkout fails from, so the states a retry
#: reopens a failed checkout in, at the step that failed.
STEP_STATES: Final[tuple[str, ...]] = (
    NEW,
    CREATED,
    CUSTOMER_APPLIED,
    SHIPPING_APPLIED,
    PAID,
    AWAITING_PAYMENT,
    PRICED,
)

#: The graph: every legal move. Nothing leaves a terminal state but a retry of a failed one,
#: back to the state it failed from (which one is the caller's to say: `reopens_in`).
EDGES: Final[tuple[Edge, ...]] = (
    Edge(CREATE_CART, (NEW,), CREATED),
    Edge(APPLY_CUSTOMER, (CREATED,), CUSTOMER_APPLIED),
    Edge(APPLY_SHIPPING, (CUSTOMER_APPLIED,), SHIPPING_APPLIED),
    Edge(APPLY_PAYMENT, _BEFORE_PAYMENT, PAID),
    Edge(REQUEST_CONFIRMATION, _BEFORE_PAYMENT, AWAITING_CONFIRMATION),
    # From awaiting_payment too: a payment step resumed there without the card waits again.
    Edge(NEED_PAYMENT, (*_BEFORE_PAYMENT, AWAITING_PAYMENT), AWAITING_PAYMENT),
    Edge(PROVIDE_PAYMENT, (AWAITING_PAYMENT,), PAID),
    Edge(CONFIRM, (AWAITING_CONFIRMATION,), PAID),
    Edge(PRICE, (PAID,), PRICED),
    Edge(SUBMIT, (PRICED,), SUBMITTED),
    Edge(REQUIRE_ACTION, (PRICED,), REQUIRES_ACTION),
    Edge(CONFIRM, (REQUIRES_ACTION,), PRICED),
    Edge(FAIL, NON_TERMINAL_STATES, FAILED),
    Edge(CANCEL, NON_TERMINAL_STATES, CANCELED),
    *(Edge(RETRY, (FAILED,), state) for state in STEP_STATES),
)


def legal_moves() -> list[tuple[str, str, str]]:
    """Every (from, to, trigger) the declaration allows, sorted: the guard table's rows."""
    return sorted((s, e.dest, e.trigger) for e in EDGES for s in e.sources)


def dest(state: str, trigger: str) -> str | None:
    """The state `trigger` leads to from `state`, or None when the move is not legal.

    A retry's end is the state the checkout failed from, not the trigger's: ask `reopens_in`.
    """
    if trigger == RETRY:
        raise ValueError("a retry leads back where the checkout failed: ask reopens_in()")
    for edge in EDGES:
        if edge.trigger == trigger and state in edge.sources:
            return edge.dest
    return None


def reopens_in(state: str) -> bool:
    """A failed checkout that failed from `state` may be reopened there (`failed -> state`)."""
    return any(e.trigger == RETRY and e.dest == state for e in EDGES)


def _sources(trigger: str) -> frozenset[str]:
    return frozenset(s for e in EDGES if e.trigger == trigger for s in e.sources)


# -- the step after each state ------------------------------------------------------------------

#: The Violet step a checkout in each state runs next; states absent here wait or are terminal.
#: `customer_applied` branches on the cart (`step_after`).
_STEP_AFTER_STATE: Final = {
    NEW: CREATE_CART,
    CREATED: APPLY_CUSTOMER,
    SHIPPING_APPLIED: APPLY_PAYMENT,
    PAID: PRICE,
    PRICED: SUBMIT,
}


def step_after(state: str, needs_shipping: bool) -> str | None:
    """The step a checkout in `state` needs next (None: terminal or waiting for outside input).

    After the customer is applied, shipping is chosen only when a bag needs it.
    """
    if state == CUSTOMER_APPLIED:
        return APPLY_SHIPPING if needs_shipping else APPLY_PAYMENT
    return _STEP_AFTER_STATE.get(state)


# -- what the front door may do now -------------------------------------------------------------

#: Triggers that send a card to Violet.
_CARD_TRIGGERS = frozenset({APPLY_PAYMENT, PROVIDE_PAYMENT})
_CANCELABLE: Final = _sources(CANCEL)
_CONFIRMABLE: Final = _sources(CONFIRM)
_AWAITING_PAYMENT: Final = _sources(PROVIDE_PAYMENT)


def _reaching(triggers: frozenset[str]) -> frozenset[str]:
    """States from which an edge firing one of `triggers` is still ahead (fail, cancel and an
    operator's retry aside: a failed checkout is not on its way anywhere)."""
    found = {s for e in EDGES if e.trigger in triggers for s in e.sources}
    growing = True
    while growing:
        before = len(found)
        for edge in EDGES:
            if edge.trigger not in (FAIL, CANCEL, RETRY) and edge.dest in found:
                found.update(edge.sources)
        growing = len(found) > before
    return frozenset(found)


#: States in which a card given to this process may still be sent to Violet; past them (paid or
#: later, terminal) a card held in memory is dropped.
CARD_STATES: Final = _reaching(_CARD_TRIGGERS)


def is_cancelable(state: str) -> bool:
    """A cancel is legal in `state` (every state but the terminal ones)."""
    return state in _CANCELABLE


def is_confirmable(state: str) -> bool:
    """The shopper's confirmation (intent or 3-D Secure) is legal in `state`."""
    return state in _CONFIRMABLE


def is_awaiting_payment(state: str) -> bool:
    """The checkout waits for card data given again (`provide_payment`)."""
    return state in _AWAITING_PAYMENT


def step_after_confirm(state: str) -> str:
    """The step a confirmed checkout resumes with: the step after the state `confirm` leads to."""
    after = dest(state, CONFIRM)
    step = None if after is None else step_after(after, needs_shipping=False)
    if step is None:
        raise ValueError(f"a checkout in state {state!r} cannot be confirmed")
    return step


# -- SQL ----------------------------------------------------------------------------------------


def sql_list(states: Iterable[str]) -> str:
    """`('a', 'b')` in declaration order: a state list for SQL text (states are plain words)."""
    chosen = set(states)
    unknown = chosen - set(STATES)
    if unknown:
        raise ValueError(f"not checkout states: {sorted(unknown)}")
    return "(" + ", ".join(f"'{s}'" for s in STATES if s in chosen) + ")"


#: `('submitted', 'failed', 'canceled')`, for `state NOT IN ...` in SQL.
TERMINAL_SQL: Final = sql_list(TERMINAL_STATES)
