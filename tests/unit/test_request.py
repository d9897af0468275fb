"""CheckoutRequest validation details that protect what the database will accept."""

import pytest

from orchestrator import InvalidRequest
from orchestrator.request import CheckoutRequest, contains_card_number, new_app_order_id
from orchestrator.sandbox.examples import TOKEN, example_request


def test_an_app_order_id_that_looks_like_a_card_number_is_refused_up_front() -> None:
    with pytest.raises(InvalidRequest, match="app_order_id"):
        CheckoutRequest.parse(example_request("order-4242424242424242", payment=TOKEN))
    CheckoutRequest.parse(example_request("order-4242424242424241", payment=TOKEN))  # not Luhn


def test_card_number_detection_matches_the_tripwire_shapes() -> None:
    assert contains_card_number("x 4242 4242 4242 4242 y")
    assert contains_card_number("4000-0000-0000-0002")
    assert contains_card_number("ref 12 4242424242424242")  # groups joined by a space
    assert not contains_card_number("order-1234")
    assert not contains_card_number("1700000000001")  # 13 digits, checksum fails


def test_generated_ids_never_carry_long_digit_runs() -> None:
    for _ in range(2000):
        app_order_id = new_app_order_id()
        assert not contains_card_number(app_order_id)
        CheckoutRequest.parse(example_request(app_order_id, payment=TOKEN))
