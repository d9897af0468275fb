"""The state graph: legal moves, illegal ones refused, and the runner's step order."""

from __future__ import annotations

import uuid

import pytest

from orchestrator import IllegalTransition, states
from orchestrator.engine import machine
from orchestrator.engine.runner import step_after
from orchestrator.store.records import CheckoutRow


def test_happy_path_is_a_chain_of_legal_moves() -> None:
    state = states.NEW
    for trigger in (
        "create_cart",
        "apply_customer",
        "apply_shipping",
        "apply_payment",
        "price",
        "submit",
    ):
        state = machine.next_state(state, trigger)
    assert state == states.SUBMITTED


@pytest.mark.parametrize(
    ("state", "trigger"),
    [
        ("new", "submit"),
        ("submitted", "cancel"),
        ("failed", "fail"),
        ("paid", "apply_shipping"),
        ("created", "price"),
        ("canceled", "confirm"),
    ],
)
def test_illegal_moves_raise(state: str, trigger: str) -> None:
    with pytest.raises(IllegalTransition, match=state):
        machine.next_state(state, trigger)


def test_only_a_retry_leaves_a_terminal_state_back_to_where_a_step_runs() -> None:
    leaving = {(s, d, t) for s, d, t in machine.legal_transitions() if s in states.TERMINAL_STATES}
    assert leaving == {(states.FAILED, state, states.RETRY) for state in states.STEP_STATES}


def test_a_retry_reopens_a_failed_checkout_only_where_a_step_runs() -> None:
    for state in states.STEP_STATES:
        with machine.attached(states.FAILED) as model:
            assert machine.reopen(model, state) == state
    for state in (states.SUBMITTED, states.CANCELED, states.REQUIRES_ACTION, "bogus"):
        with machine.attached(states.FAILED) as model, pytest.raises(IllegalTransition):
            machine.reopen(model, state)
    with machine.attached(states.SUBMITTED) as model, pytest.raises(IllegalTransition):
        machine.reopen(model, states.PRICED)
    # A retry that does not say where to reopen takes no edge.
    with pytest.raises(IllegalTransition, match="retry"):
        machine.next_state(states.FAILED, states.RETRY)


def test_every_non_terminal_state_can_fail_and_be_canceled() -> None:
    pairs = {(s, d) for s, d, _ in machine.legal_transitions()}
    for state in states.NON_TERMINAL_STATES:
        assert (state, states.FAILED) in pairs
        assert (state, states.CANCELED) in pairs


def test_mermaid_is_drawn_from_the_graph() -> None:
    """One arrow per declared move, labelled with its trigger, plus the entry arrow."""
    source = machine.mermaid()
    arrows = sorted(line.strip() for line in source.splitlines() if "-->" in line)
    declared = [f"{s} --> {d}: {t}" for s, d, t in states.legal_moves()]
    assert arrows == sorted([*declared, f"[*] --> {states.INITIAL}"])
    for state in states.STATES:
        assert f'state "{state}" as {state}' in source


def _row(state: str, bags: list[dict[str, object]]) -> CheckoutRow:
    return CheckoutRow(
        id=uuid.uuid4(),
        app_order_id="x",
        state=state,
        request={},
        payment_kind="token",
        currency="USD",
        bags=bags,
    )


def test_shipping_is_skipped_only_when_no_bag_needs_it() -> None:
    assert step_after(_row("customer_applied", [{"needs_shipping": False}])) == "apply_payment"
    assert step_after(_row("customer_applied", [{"needs_shipping": True}])) == "apply_shipping"
    assert step_after(_row("awaiting_payment", [])) is None
    assert step_after(_row("submitted", [])) is None


def test_a_registered_row_starts_in_the_machines_initial_state() -> None:
    from orchestrator.store.records import CheckoutRow

    row = CheckoutRow.registered(
        app_order_id="a",
        request={},
        payment_kind="token",
        currency="USD",
        first_step="create_cart",
        run=False,
    )
    assert row.state == states.INITIAL == machine.CheckoutModel().state
    assert row.attempt == 0 and not row.in_flight
