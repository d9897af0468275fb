"""CheckoutRequest validation details that protect what the database will accept."""

import pytest

from orchestrator import InvalidRequest, sensitive
from orchestrator.request import CheckoutRequest, contains_card_number, new_app_order_id
from orchestrator.sandbox.examples import ADDRESS, CUSTOMER, TOKEN, example_request
from tests.secret_cases import TEXT_CASES, SecretCase, params


def test_an_app_order_id_that_looks_like_a_card_number_is_refused_up_front() -> None:
    with pytest.raises(InvalidRequest, match="app_order_id"):
        CheckoutRequest.parse(example_request("order-4242424242424242", payment=TOKEN))
    not_luhn = CheckoutRequest.parse(example_request("order-4242424242424241", payment=TOKEN))
    assert not_luhn.app_order_id == "order-4242424242424241"


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
        assert CheckoutRequest.parse(example_request(app_order_id, payment=TOKEN)).app_order_id == (
            app_order_id
        )


@pytest.mark.parametrize("case", params(TEXT_CASES))
def test_a_secret_in_a_free_text_field_is_refused_naming_the_field(case: SecretCase) -> None:
    """Request validation applies the one specification (tests/data/secret_cases.json): what the
    database or the redaction would find is refused up front, naming the field, never the value."""
    address = {**ADDRESS, "address_2": case.text}
    request = example_request("order-1", payment=TOKEN, shipping_address=address)
    if not case.applies_in("validation"):
        stored = CheckoutRequest.parse(request).persisted()
        assert case.text is not None
        assert stored["shipping_address"]["address_2"] == case.text.strip()
        return
    with pytest.raises(InvalidRequest) as caught:
        CheckoutRequest.parse(request)
    assert [name for name, _ in caught.value.fields] == ["shipping_address.address_2"]
    assert case.text is not None and case.text.strip() not in str(caught.value)


def test_a_key_that_is_a_card_number_is_not_repeated_in_the_error() -> None:
    request = {**example_request("order-1", payment=TOKEN), "4242424242424242": "x"}
    with pytest.raises(InvalidRequest) as caught:
        CheckoutRequest.parse(request)
    assert "4242424242424242" not in str(caught.value)
    assert "extra" in str(caught.value).lower() or "not permitted" in str(caught.value)


def test_a_configured_credential_in_the_request_is_refused_when_it_is_stored() -> None:
    """The CLI parses the request file before it builds its Violet client (which registers the
    credentials): the stored form is checked again."""
    secret = "request-credential-0042-value"
    request = CheckoutRequest.parse(
        example_request("order-1", payment=TOKEN, customer={**CUSTOMER, "last_name": secret})
    )
    sensitive.register_credential(secret)
    with pytest.raises(InvalidRequest) as caught:
        request.persisted()
    assert [name for name, _ in caught.value.fields] == ["customer.last_name"]
    assert secret not in str(caught.value)


def test_a_bad_payment_token_is_refused_naming_payment_token() -> None:
    """A refused field is named by its whole path: the token payment's field is itself called
    `token`, like its union tag, and only the tag is dropped from the location."""
    request = example_request(
        "order-1", payment={"type": "token", "token": "tok\x00visa", "provider": "STRIPE"}
    )
    with pytest.raises(InvalidRequest) as refused:
        CheckoutRequest.parse(request)
    assert [name for name, _ in refused.value.fields] == ["payment.token"], refused.value.fields
