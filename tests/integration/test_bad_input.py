"""Bad input gets a clear error naming the field, never echoes card data, and changes nothing;
input the database accepts is not refused."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import (
    CheckoutNotFound,
    DatabaseUnavailable,
    InvalidRequest,
    Orchestrator,
)
from orchestrator.request import CheckoutRequest
from orchestrator.sandbox import SandboxControl
from tests.fixtures.db import libpq_url
from tests.fixtures.orchestrator import (
    ADDRESS,
    DIGITAL,
    TOKEN,
    VISA,
    checkout_request,
    make_settings,
)

CARD = "4242424242424242"


async def _assert_nothing_changed(engine: AsyncEngine, control: SandboxControl) -> None:
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM checkouts"))).scalar_one()
    assert count == 0, "a checkout row was written for a bad request"
    assert (await control.stats())["carts_created"] == 0, "Violet was called for a bad request"


def _fields(caught: pytest.ExceptionInfo[InvalidRequest]) -> set[str]:
    return {name for name, _ in caught.value.fields}


async def test_invalid_request_names_every_bad_field_and_writes_nothing(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    bad = checkout_request(
        skus=[{"sku_id": -1, "quantity": 0}],
        currency="dollars",
        customer={"first_name": "", "last_name": "L", "email": "not-an-email"},
        payment={
            "type": "card",
            "card_number": "4242424242424241",
            "card_cvc": "1",
            "card_exp_month": 13,
            "card_exp_year": 2030,
            "card_postal_code": "1",
        },
    )
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(bad)
    assert {
        "skus.0.sku_id",
        "skus.0.quantity",
        "currency",
        "customer.first_name",
        "customer.email",
        "payment.card_number",
        "payment.card_cvc",
        "payment.card_exp_month",
    } <= _fields(caught)
    assert "4242424242424241" not in str(caught.value)
    await _assert_nothing_changed(engine, sandbox_control)


async def test_unknown_payment_type_and_unknown_field_are_named(orch: Orchestrator) -> None:
    with pytest.raises(InvalidRequest, match="payment"):
        await orch.start(checkout_request(payment={"type": "cash"}))
    with pytest.raises(InvalidRequest, match="coupon"):
        await orch.start(checkout_request(coupon="FREE"))


async def test_unknown_checkout_is_not_found(orch: Orchestrator) -> None:
    with pytest.raises(CheckoutNotFound):
        await orch.get("no-such-order")
    with pytest.raises(CheckoutNotFound):
        await orch.run("00000000-0000-0000-0000-000000000000")


async def test_unreachable_database_is_reported_without_the_password() -> None:
    settings = make_settings(
        "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/nowhere", "http://sandbox/v1"
    )
    with pytest.raises(DatabaseUnavailable) as caught:
        await Orchestrator(settings).open()
    assert "hunter2" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


async def test_provide_payment_with_a_bad_card_dict_names_the_field_and_never_echoes_card_data(
    orch: Orchestrator,
) -> None:
    """A bad card given to provide_payment is refused as InvalidRequest, never as pydantic's raw
    ValidationError, whose message carries `input_value=` (the card number, the CVC)."""
    checkout = await orch.start(checkout_request(), run=False)
    orch._cards.clear()  # another process drives it: it waits for the card
    assert (await orch.run(checkout.id)).state == "awaiting_payment"
    bad_cards: list[tuple[dict[str, Any], str]] = [
        ({**VISA, "card_number": "4242424242424241"}, "4242424242424241"),  # fails Luhn
        ({**VISA, "card_number": int(CARD)}, CARD),  # wrong type
        ({**{k: v for k, v in VISA.items() if k != "card_cvc"}, "cvc": "947"}, "947"),  # typo
    ]
    for payment, secret in bad_cards:
        with pytest.raises(InvalidRequest) as caught:
            await orch.provide_payment(checkout.id, payment)
        assert secret not in f"{caught.value} {caught.value!r}"
    assert (await orch.get(checkout.id)).state == "awaiting_payment"


async def test_nul_in_a_field_after_a_card_number_does_not_put_the_card_in_the_error(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """A NUL is refused before PostgreSQL sees the request: its JSON error CONTEXT quotes the
    text around the NUL, which would put a card number typed into address_2 in the message."""
    address = {**ADDRESS, "address_2": CARD + "\x00"}
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(shipping_address=address))
    assert CARD not in str(caught.value)
    await _assert_nothing_changed(engine, sandbox_control)


async def test_card_number_in_a_free_text_field_is_refused_naming_the_field(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """Every text field is scanned for card numbers up front, so the caller gets the field's
    name rather than the database tripwire's IntegrityError, which names no field."""
    customer = {"first_name": CARD, "last_name": "Lovelace", "email": "ada@example.com"}
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(customer=customer))
    assert "customer.first_name" in _fields(caught)
    assert CARD not in str(caught.value)
    await _assert_nothing_changed(engine, sandbox_control)


async def test_nul_character_is_refused_naming_the_field(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """PostgreSQL cannot store a NUL in text: it is refused at validation, naming the field."""
    customer = {"first_name": "Ada\x00", "last_name": "Lovelace", "email": "ada@example.com"}
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(customer=customer))
    assert "customer.first_name" in _fields(caught)
    await _assert_nothing_changed(engine, sandbox_control)


async def test_sku_id_beyond_64_bits_is_refused_naming_the_field(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """A sku_id has an upper bound: a JSON serialiser cannot write an integer beyond 64 bits."""
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(skus=[{"sku_id": 10**30, "quantity": 1}]))
    assert "skus.0.sku_id" in _fields(caught)
    await _assert_nothing_changed(engine, sandbox_control)


async def test_boolean_for_an_integer_field_is_refused(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """Validation is strict: JSON `true` is not taken as quantity 1."""
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(skus=[{"sku_id": 196777, "quantity": True}]))
    assert "skus.0.quantity" in _fields(caught)
    await _assert_nothing_changed(engine, sandbox_control)


async def test_card_number_in_non_ascii_digits_is_refused_before_anything_is_written(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """A card number is ASCII digits only (`str.isdigit()` and `int()` accept fullwidth
    digits): one in fullwidth digits is refused before a row or a Violet cart exists, rather
    than sent to Violet and then refused by the tripwire with the payment left in flight."""
    fullwidth = "".join(chr(0xFF10 + int(d)) for d in CARD)  # U+FF10 is FULLWIDTH DIGIT ZERO
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(payment={**VISA, "card_number": fullwidth}))
    assert "payment.card_number" in _fields(caught)
    await _assert_nothing_changed(engine, sandbox_control)


async def test_expired_card_is_refused_before_anything_is_written(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """An expired card is refused up front, before a row and a Violet cart exist, rather than
    failing at apply_payment with Violet's expired_card."""
    expired = {**VISA, "card_exp_month": 1, "card_exp_year": 2001}
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(payment=expired))
    assert any(name.startswith("payment.card_exp") for name in _fields(caught))
    await _assert_nothing_changed(engine, sandbox_control)


@pytest.mark.parametrize(
    "ref",
    ["²", "a\x00b", 424242],
    ids=["unicode-digit", "nul", "int-violet-order-id"],
)
async def test_get_with_a_malformed_ref_is_not_found(orch: Orchestrator, ref: Any) -> None:
    """A reference that is neither an id nor an app_order_id is not found (or refused), never a
    raw error: '²'.isdigit() holds but int('²') raises, a NUL cannot reach PostgreSQL, and an
    int (a Violet order id, as Checkout.violet_order_id holds it) is no UUID."""
    with pytest.raises((CheckoutNotFound, InvalidRequest)):
        await orch.get(ref)


async def test_a_null_app_order_id_gets_one_made_up(orch: Orchestrator) -> None:
    """docs/cli.md says app_order_id is optional: JSON null means "make one up"."""
    request = {**checkout_request(), "app_order_id": None}
    done = await orch.start(request)
    assert done.state == "submitted" and done.app_order_id.startswith("ord-")


async def test_not_found_never_repeats_a_card_number_given_as_a_reference(
    orch: Orchestrator,
) -> None:
    with pytest.raises(CheckoutNotFound) as caught:
        await orch.get(CARD)
    assert CARD not in str(caught.value)


_UUID_WITH_DIGIT_GROUPS = "4b3c2d1e-9f8a-4c7d-0423-683873806956"  # "0423683873806956" is Luhn-valid


@pytest.mark.parametrize(
    "field",
    ["payment.token", "shipping_address.address_2", "app_order_id"],
)
async def test_a_uuid_the_database_accepts_is_not_refused_as_a_card_number(
    database_url: str, field: str
) -> None:
    """The request's card-number scan mirrors the database tripwire
    (`orchestrator_find_card_number`), which skips a digit run dash-joined to a hex group so
    UUIDs never match: a UUID-shaped payment token (a provider nonce), a UUID in an address
    line or a UUID app_order_id is accepted. About 1 in 10 UUIDs whose last groups are all
    decimal would otherwise look like a card number."""
    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as conn:
        cur = await conn.execute(
            "SELECT orchestrator_find_card_number(%s)", (f'{{"v": "{_UUID_WITH_DIGIT_GROUPS}"}}',)
        )
        row = await cur.fetchone()
    assert row is not None and row[0] is None, "premise: the database tripwire accepts this UUID"

    request = checkout_request(skus=DIGITAL, payment=dict(TOKEN))
    request["shipping_address"] = dict(ADDRESS)
    if field == "payment.token":
        request["payment"]["token"] = _UUID_WITH_DIGIT_GROUPS
    elif field == "shipping_address.address_2":
        request["shipping_address"]["address_2"] = f"Unit {_UUID_WITH_DIGIT_GROUPS}"
    else:
        request["app_order_id"] = _UUID_WITH_DIGIT_GROUPS
    stored = CheckoutRequest.parse(request).persisted()
    assert _UUID_WITH_DIGIT_GROUPS in json.dumps(stored), stored
