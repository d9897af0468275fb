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


def test_terminal_states_have_no_way_out() -> None:
    sources = {source for source, _, _ in machine.legal_transitions()}
    assert not sources & states.TERMINAL_STATES


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
