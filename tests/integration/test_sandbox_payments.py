"""Payments in the sandbox: Violet/Stripe test cards and tokens, payment intents, 3-D Secure."""

from __future__ import annotations

import re
from typing import Any

import pytest

from orchestrator.sandbox import SandboxControl
from tests.fixtures.sandbox import RawViolet, prepare_cart


def card(number: str, cvc: str = "123") -> dict[str, Any]:
    return {
        "card_number": number,
        "card_cvc": cvc,
        "card_exp_month": 12,
        "card_exp_year": 2034,
        "card_postal_code": "11211",
    }


def scalars(value: Any) -> list[tuple[str, Any]]:
    """Every (key, scalar) pair in a JSON document."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in [(k, v), *scalars(v)]]
    if isinstance(value, list):
        return [pair for item in value for pair in scalars(item)]
    return []


def assert_card_not_echoed(body: Any, number: str, cvc: str) -> None:
    for key, value in scalars(body):
        assert not key.startswith("card_"), key
        assert number not in str(value), key
        assert str(value) != cvc, key


async def submit(violet: RawViolet, cart_id: int) -> Any:
    return await violet.post(f"/checkout/cart/{cart_id}/submit", json={})


@pytest.mark.parametrize(
    ("number", "brand"),
    [("4242424242424242", "visa"), ("5555555555554444", "mastercard"), ("378282246310005", "amex")],
)
async def test_success_cards_complete_and_are_never_echoed(
    sandbox_violet: RawViolet, number: str, brand: str
) -> None:
    cvc = "1234" if brand == "amex" else "987"
    cart = await prepare_cart(sandbox_violet, [196777], payment=card(number, cvc))
    assert cart["payment_method"]["brand"] == brand
    assert cart["payment_method"]["last_four"] == number[-4:]
    response = await submit(sandbox_violet, cart["id"])
    assert response.json()["status"] == "COMPLETED"
    for body in (cart, response.json()):
        assert_card_not_echoed(body, number, cvc)


@pytest.mark.parametrize(
    ("payment", "error"),
    [
        (card("4000000000000002"), "card_declined"),
        (card("4000000000009995"), "insufficient_funds"),
        ({"token": "tok_chargeDeclined", "payment_provider": "STRIPE"}, "card_declined"),
    ],
)
async def test_declines_happen_at_submit_and_the_cart_can_pay_again(
    sandbox_violet: RawViolet,
    sandbox_control: SandboxControl,
    payment: dict[str, Any],
    error: str,
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777], payment=payment)
    declined = await submit(sandbox_violet, cart["id"])
    assert declined.status_code == 400 and declined.json()["error"] == error
    assert "4000" not in declined.text
    after = (await sandbox_violet.get(f"/checkout/cart/{cart['id']}")).json()
    assert after["status"] == "IN_PROGRESS"
    retry = await sandbox_violet.post(
        f"/checkout/cart/{cart['id']}/payment",
        json={"token": "tok_visa", "payment_provider": "STRIPE"},
    )
    assert retry.status_code == 200
    assert (await submit(sandbox_violet, cart["id"])).json()["status"] == "COMPLETED"
    assert (await sandbox_control.stats())["submits"] == {str(cart["id"]): 1}


@pytest.mark.parametrize(
    ("payment", "error", "field"),
    [
        (card("4000000000000069"), "expired_card", None),
        (card("4000000000000127"), "incorrect_cvc", "card_cvc"),
        (card("4242424242424241"), "invalid_card_number", "card_number"),
        ({**card("4242424242424242"), "card_exp_year": 2001}, "expired_card", "card_exp_year"),
        ({**card("4242424242424242"), "card_cvc": "12"}, "invalid_field", "card_cvc"),
        ({**card("4242424242424242"), "card_exp_month": 13}, "invalid_field", "card_exp_month"),
        ({k: v for k, v in card("4242424242424242").items() if k != "card_cvc"},
         "missing_field", "card_cvc"),
        ({"token": "tok_visa"}, "missing_field", "payment_provider"),
        ({"token": "tok_nonsense", "payment_provider": "STRIPE"}, "invalid_payment_token", "token"),
        ({}, "missing_field", "card_number"),
    ],
)  # fmt: skip
async def test_bad_payment_input_is_refused_at_apply(
    sandbox_violet: RawViolet, payment: dict[str, Any], error: str, field: str | None
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777], payment=None)
    response = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/payment", json=payment)
    body = response.json()
    assert (response.status_code, body["error"]) == (400, error)
    if field is not None:
        assert field in body["message"]
    if "card_number" in payment:
        assert payment["card_number"] not in response.text
    after = (await sandbox_violet.get(f"/checkout/cart/{cart['id']}")).json()
    assert "payment_method" not in after


@pytest.mark.parametrize(
    "payment",
    [
        card("4000002760003184"),
        {"token": "tok_threeDSecure2Required", "payment_provider": "STRIPE"},
    ],
)
async def test_three_d_secure_requires_action_until_the_shopper_confirms(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl, payment: dict[str, Any]
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777], payment=payment)
    first = (await submit(sandbox_violet, cart["id"])).json()
    assert first["status"] == "REQUIRES_ACTION"
    assert re.fullmatch(r"pi_\w+_secret_\w+", first["payment_intent_client_secret"])
    again = await submit(sandbox_violet, cart["id"])
    assert again.status_code == 200 and again.json()["status"] == "REQUIRES_ACTION"
    assert (await sandbox_control.stats())["submits"] == {}

    await sandbox_control.confirm_payment(cart["id"])
    done = (await submit(sandbox_violet, cart["id"])).json()
    assert done["status"] == "COMPLETED"
    assert done["bags"][0]["status"] == "ACCEPTED"
    assert (await sandbox_control.stats())["submits"] == {str(cart["id"]): 1}


async def test_intent_payment_needs_shopper_confirmation_before_submit(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777], payment={"intent_based_capture": True})
    assert cart["stripe_key"] == "pk_test_UHg8oLvg4rrDCbvtqfwTE8qd"
    assert cart["intent_based_checkout"] is True
    secret = cart["payment_intent_client_secret"]
    assert re.fullmatch(r"pi_\w+_secret_\w+", secret)
    (transaction,) = cart["payment_transactions"]
    assert transaction["capture_status"] == "REQUIRES_PAYMENT_METHOD"
    assert transaction["metadata"]["payment_intent_client_secret"] == secret
    assert secret.startswith(transaction["payment_provider_transaction_id"] + "_secret_")

    early = await submit(sandbox_violet, cart["id"])
    assert (early.status_code, early.json()["error"]) == (400, "payment_intent_not_confirmed")

    await sandbox_control.confirm_payment(cart["id"])
    order = (await submit(sandbox_violet, cart["id"])).json()
    assert order["status"] == "COMPLETED"
    assert order["payment_intent_client_secret"] == secret  # the secret stays the same (S18)
    assert (await sandbox_control.stats())["submits"] == {str(cart["id"]): 1}


async def test_payment_update_follows_the_total_on_intent_carts_only(
    sandbox_violet: RawViolet,
) -> None:
    card_cart = await prepare_cart(sandbox_violet, [196777])
    refused = await sandbox_violet.post(f"/checkout/cart/{card_cart['id']}/payment/update")
    assert (refused.status_code, refused.json()["error"]) == (400, "not_intent_based")

    cart = await prepare_cart(sandbox_violet, [196777], payment={"intent_based_capture": True})
    await sandbox_violet.get(f"/checkout/cart/{cart['id']}/price")
    updated = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/payment/update")
    assert updated.status_code == 200
    body = updated.json()
    assert body["payment_transactions"][0]["amount"] == body["total"] == 1089


async def test_wallet_cart_carries_a_client_secret_from_creation(sandbox_violet: RawViolet) -> None:
    response = await sandbox_violet.post(
        "/checkout/cart", json={"skus": [{"sku_id": 196777}], "wallet_based_checkout": True}
    )
    cart = response.json()
    assert cart["wallet_based_checkout"] is True
    assert cart["payment_intent_client_secret"].startswith("pi_")


async def test_confirming_a_cart_with_nothing_to_confirm_is_refused(
    sandbox_violet: RawViolet, sandbox_transport: Any
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777])
    response = await sandbox_violet.client.post(
        f"http://sandbox/_sandbox/carts/{cart['id']}/confirm_payment"
    )
    assert (response.status_code, response.json()["error"]) == (400, "nothing_to_confirm")
