"""The checkout state machine: `transitions` built from the declaration in `orchestrator.states`.

The runner fires triggers on it (an illegal one raises), and the diagram is drawn from it. It is
kept pure: no callbacks, no I/O — `transitions` does not roll a state back when a callback
raises, so all I/O lives in the runner, around the machine. The one condition it holds is pure:
a retry leaves `failed` by several edges, and the edge taken is the one to the state the caller
names (`reopen`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, Literal

from transitions import Machine, MachineError

from orchestrator import states
from orchestrator.errors import IllegalTransition


def _lands_in(dest: str) -> Callable[..., bool]:
    """The condition of the retry edge to `dest`: taken when the retry names that state."""

    def lands_in(*, to: str | None = None) -> bool:
        return to == dest

    lands_in.__name__ = f"to_{dest}"
    return lands_in


def _transition(edge: states.Edge) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "trigger": edge.trigger,
        "source": list(edge.sources),
        "dest": edge.dest,
    }
    if edge.trigger == states.RETRY:
        spec["conditions"] = [_lands_in(edge.dest)]
    return spec


#: The declaration in the form `transitions` takes.
TRANSITIONS: Final[list[dict[str, Any]]] = [_transition(e) for e in states.EDGES]


class CheckoutModel:
    """What `transitions` attaches triggers to: only a state, nothing else."""

    state: str

    def __init__(self) -> None:
        self.state = states.INITIAL


MACHINE: Final = Machine(
    model=None,
    states=list(states.STATES),
    transitions=TRANSITIONS,
    initial=states.INITIAL,
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
        moved = getattr(model, trigger)()
    except (MachineError, AttributeError) as exc:
        moved = False
        cause: BaseException | None = exc
    else:
        cause = None
    if not moved:  # a retry without the state it reopens in takes no edge
        raise IllegalTransition(
            f"cannot {trigger.replace('_', ' ')} a checkout in state {before!r}"
        ) from cause
    return model.state


def reopen(model: CheckoutModel, to: str) -> str:
    """Retry an attached failed model back to `to`, the state it failed from; illegal moves raise
    (a model not failed, or a state no step runs in)."""
    before = model.state
    try:
        moved = model.retry(to=to)  # type: ignore[attr-defined]
    except (MachineError, AttributeError) as exc:
        raise IllegalTransition(f"cannot retry a checkout in state {before!r}") from exc
    if not moved:
        raise IllegalTransition(f"a failed checkout cannot be reopened in state {to!r}")
    return model.state


def next_state(state: str, trigger: str) -> str:
    """The state `trigger` leads to from `state` (attaching a model only for the question)."""
    with attached(state) as model:
        return fire(model, trigger)


def _draw(engine: Literal["mermaid", "pygraphviz"], **draw: Any) -> Any:
    """The diagram, drawn by a `GraphMachine` over the same declaration as `MACHINE`."""
    from transitions.extensions import GraphMachine

    graph = GraphMachine(
        model=None,
        states=list(states.STATES),
        transitions=TRANSITIONS,
        initial=states.INITIAL,
        auto_transitions=False,
        graph_engine=engine,
        title="checkout",
    )
    model = CheckoutModel()
    graph.add_model(model, initial=states.INITIAL)
    try:
        return model.get_graph().draw(None, **draw)  # type: ignore[attr-defined]
    finally:
        graph.remove_model(model)


def mermaid() -> str:
    """The state diagram as mermaid source (no dependencies beyond `transitions`)."""
    return str(_draw("mermaid"))


def svg() -> str:
    """The state diagram as SVG; needs graphviz and pygraphviz (ImportError or OSError without)."""
    drawn = _draw("pygraphviz", format="svg", prog="dot")
    return drawn.decode() if isinstance(drawn, bytes) else str(drawn)
