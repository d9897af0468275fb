"""The checkout state graph, declared once with `transitions`: the single source of truth.

The runner asks it which moves are legal (an illegal trigger raises), the database's guard table
is checked against it by a test, and the diagram is drawn from it. It is kept pure: no callbacks,
no I/O — `transitions` does not roll a state back when a callback raises, so all I/O lives in
the runner, around the machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from transitions import Machine, MachineError

from orchestrator.errors import IllegalTransition

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
TERMINAL_STATES: Final = frozenset({SUBMITTED, FAILED, CANCELED})
#: States that wait for outside input (shopper or backend); recovery does not spin on them.
WAITING_STATES: Final = frozenset({AWAITING_PAYMENT, AWAITING_CONFIRMATION, REQUIRES_ACTION})
NON_TERMINAL_STATES: Final = tuple(s for s in STATES if s not in TERMINAL_STATES)

_BEFORE_PAYMENT = [CUSTOMER_APPLIED, SHIPPING_APPLIED]

TRANSITIONS: Final[list[dict[str, Any]]] = [
    {"trigger": "create_cart", "source": NEW, "dest": CREATED},
    {"trigger": "apply_customer", "source": CREATED, "dest": CUSTOMER_APPLIED},
    {"trigger": "apply_shipping", "source": CUSTOMER_APPLIED, "dest": SHIPPING_APPLIED},
    {"trigger": "apply_payment", "source": _BEFORE_PAYMENT, "dest": PAID},
    {"trigger": "request_confirmation", "source": _BEFORE_PAYMENT, "dest": AWAITING_CONFIRMATION},
    {"trigger": "need_payment", "source": _BEFORE_PAYMENT, "dest": AWAITING_PAYMENT},
    {"trigger": "provide_payment", "source": AWAITING_PAYMENT, "dest": PAID},
    {"trigger": "confirm", "source": AWAITING_CONFIRMATION, "dest": PAID},
    {"trigger": "price", "source": PAID, "dest": PRICED},
    {"trigger": "submit", "source": PRICED, "dest": SUBMITTED},
    {"trigger": "require_action", "source": PRICED, "dest": REQUIRES_ACTION},
    {"trigger": "confirm", "source": REQUIRES_ACTION, "dest": PRICED},
    {"trigger": "fail", "source": list(NON_TERMINAL_STATES), "dest": FAILED},
    {"trigger": "cancel", "source": list(NON_TERMINAL_STATES), "dest": CANCELED},
]


class CheckoutModel:
    """What `transitions` attaches triggers to: only a state, nothing else."""

    state: str

    def __init__(self) -> None:
        self.state = NEW


MACHINE: Final = Machine(
    model=None,
    states=list(STATES),
    transitions=TRANSITIONS,
    initial=NEW,
    auto_transitions=False,
    send_event=False,
)


def legal_transitions() -> list[tuple[str, str, str]]:
    """Every (from, to, trigger) the machine allows, read back from the machine itself."""
    pairs: list[tuple[str, str, str]] = []
    for trigger, event in MACHINE.events.items():
        for source, transitions in event.transitions.items():
            for transition in transitions:
                pairs.append((source, str(transition.dest), trigger))
    return sorted(pairs)


#: Models attached to MACHINE and not in use. Attaching binds every trigger, `may_` check and
#: state test onto the model (~75 us, 8% of a recovery process's CPU when done per drive), so a
#: model is attached once and reused: there are never more than checkouts driven at once.
_IDLE_MODELS: list[CheckoutModel] = []


@contextmanager
def attached(state: str) -> Iterator[CheckoutModel]:
    """Lend a model attached to the shared machine, set to `state`, for the duration of a block."""
    if _IDLE_MODELS:
        model = _IDLE_MODELS.pop()
        MACHINE.set_state(state, model=model)  # an unknown state raises ValueError, as add_model
    else:
        model = CheckoutModel()
        MACHINE.add_model(model, initial=state)
    try:
        yield model
    finally:
        _IDLE_MODELS.append(model)


def fire(model: CheckoutModel, trigger: str) -> str:
    """Fire `trigger` on an attached model and return the new state; illegal moves raise."""
    before = model.state
    try:
        getattr(model, trigger)()
    except (MachineError, AttributeError) as exc:
        raise IllegalTransition(
            f"cannot {trigger.replace('_', ' ')} a checkout in state {before!r}"
        ) from exc
    return model.state


def next_state(state: str, trigger: str) -> str:
    """The state `trigger` leads to from `state` (attaching a model only for the question)."""
    with attached(state) as model:
        return fire(model, trigger)


def mermaid() -> str:
    """The state diagram as mermaid source, drawn by transitions' GraphMachine from this graph."""
    from transitions.extensions import GraphMachine

    graph = GraphMachine(
        model=None,
        states=list(STATES),
        transitions=TRANSITIONS,
        initial=NEW,
        auto_transitions=False,
        graph_engine="mermaid",
        title="checkout",
    )
    model = CheckoutModel()
    graph.add_model(model, initial=NEW)
    source: str = model.get_graph().draw(None)  # type: ignore[attr-defined]
    graph.remove_model(model)
    return source
