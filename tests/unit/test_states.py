"""The declaration's named answers: what the front door may do in each state, and what follows."""

from __future__ import annotations

import pytest

from orchestrator import states


def test_a_card_may_be_sent_only_before_payment() -> None:
    assert {
        states.NEW,
        states.CREATED,
        states.CUSTOMER_APPLIED,
        states.SHIPPING_APPLIED,
        states.AWAITING_PAYMENT,
    } == states.CARD_STATES


def test_only_terminal_states_refuse_a_cancel() -> None:
    refused = {s for s in states.STATES if not states.is_cancelable(s)}
    assert refused == states.TERMINAL_STATES


def test_a_confirmation_is_legal_only_while_waiting_for_one() -> None:
    confirmable = {s for s in states.STATES if states.is_confirmable(s)}
    assert confirmable == {states.AWAITING_CONFIRMATION, states.REQUIRES_ACTION}


def test_card_data_is_given_again_only_to_a_checkout_awaiting_payment() -> None:
    awaiting = {s for s in states.STATES if states.is_awaiting_payment(s)}
    assert awaiting == {states.AWAITING_PAYMENT}


def test_a_confirmed_checkout_resumes_with_price_or_submit() -> None:
    assert states.step_after_confirm(states.AWAITING_CONFIRMATION) == states.PRICE
    assert states.step_after_confirm(states.REQUIRES_ACTION) == states.SUBMIT
    with pytest.raises(ValueError, match="paid"):
        states.step_after_confirm(states.PAID)


def test_every_state_that_runs_a_step_has_a_legal_move_named_after_it() -> None:
    for state in states.NON_TERMINAL_STATES:
        for needs_shipping in (False, True):
            step = states.step_after(state, needs_shipping)
            if step is not None:
                assert states.dest(state, step) is not None, (state, step)
    waiting = {s for s in states.STATES if states.step_after(s, needs_shipping=True) is None}
    assert waiting == states.WAITING_STATES | states.TERMINAL_STATES


def test_sql_state_lists_follow_the_declaration_and_refuse_unknown_states() -> None:
    assert states.TERMINAL_SQL == "('submitted', 'failed', 'canceled')"
    assert states.sql_list([states.PAID, states.NEW]) == "('new', 'paid')"
    with pytest.raises(ValueError, match="bogus"):
        states.sql_list(["bogus"])


def test_a_step_runs_in_each_step_state_and_nowhere_else() -> None:
    """The states a checkout can fail from, so those a retry reopens in: the states with a step
    after them, and awaiting_payment, where apply_payment runs once the card is given again."""
    with_step = {
        s for s in states.STATES for ship in (False, True) if states.step_after(s, ship) is not None
    }
    assert set(states.STEP_STATES) == with_step | {states.AWAITING_PAYMENT}
    assert {s for s in states.STATES if states.reopens_in(s)} == set(states.STEP_STATES)
    with pytest.raises(ValueError, match="reopens_in"):
        states.dest(states.FAILED, states.RETRY)


def test_a_payment_resumed_without_its_card_waits_for_it_again() -> None:
    assert states.dest(states.AWAITING_PAYMENT, states.NEED_PAYMENT) == states.AWAITING_PAYMENT
