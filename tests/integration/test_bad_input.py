"""Bad input gets a clear error naming the field and changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import (
    CheckoutNotFound,
    DatabaseUnavailable,
    InvalidRequest,
    Orchestrator,
)
from orchestrator.sandbox import SandboxControl
from tests.fixtures.orchestrator import checkout_request, make_settings


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
    fields = {name for name, _ in caught.value.fields}
    assert {
        "skus.0.sku_id",
        "skus.0.quantity",
        "currency",
        "customer.first_name",
        "customer.email",
        "payment.card_number",
        "payment.card_cvc",
        "payment.card_exp_month",
    } <= fields
    assert "4242424242424241" not in str(caught.value)
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM checkouts"))).scalar_one()
    assert count == 0
    assert (await sandbox_control.stats())["carts_created"] == 0


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
