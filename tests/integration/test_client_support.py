"""Shared fixtures and helpers for the Violet client's sandbox tests (this module has no tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stamina
from pydantic import SecretStr
from starlette.applications import Starlette

from orchestrator.sandbox import SANDBOX_CREDENTIALS, SandboxControl, asgi_transport, create_app
from orchestrator.violet import (
    Address,
    CardPayment,
    Cart,
    Customer,
    PaymentMethod,
    ShippingSelection,
    SkuLine,
    VioletClient,
)

IN_PROCESS_URL = "http://sandbox/v1"
CUSTOMER = Customer(first_name="Ada", last_name="Lovelace", email="ada@example.com")
ADDRESS = Address(
    address_1="1 Main St",
    city="Brooklyn",
    state="NY",
    postal_code="11211",
    country="US",
    phone="5555550100",
)


def card(number: str, cvc: str = "947") -> CardPayment:
    return CardPayment(
        card_number=SecretStr(number),
        card_cvc=SecretStr(cvc),
        card_exp_month=12,
        card_exp_year=2034,
        card_postal_code="11211",
    )


@dataclass
class Sandbox:
    """An in-process sandbox: its app, a transport into it, and its control surface."""

    app: Starlette
    transport: httpx.AsyncBaseTransport
    control: SandboxControl

    def client(self, **kwargs: Any) -> VioletClient:
        options: dict[str, Any] = {**SANDBOX_CREDENTIALS, **kwargs}
        return VioletClient(base_url=IN_PROCESS_URL, transport=self.transport, **options)

    async def stats(self) -> dict[str, Any]:
        return await self.control.stats()


@pytest.fixture(autouse=True)
def no_retry_waits() -> Iterator[None]:
    """Retries keep their counts but lose their sleeps."""
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    app = create_app()
    transport = asgi_transport(app)
    async with SandboxControl(transport=transport) as control:
        yield Sandbox(app=app, transport=transport, control=control)


@pytest.fixture
async def violet(sandbox: Sandbox) -> AsyncIterator[VioletClient]:
    async with sandbox.client() as client:
        yield client


async def ready_to_submit(
    client: VioletClient,
    skus: list[int],
    payment: PaymentMethod,
    *,
    app_order_id: str,
) -> Cart:
    """Drive a new cart through customer, shipping (when needed), payment and price."""
    cart = await client.create_cart(
        skus=[SkuLine(sku_id=s) for s in skus], app_order_id=app_order_id
    )
    cart = await client.apply_customer(cart.id, CUSTOMER)
    if cart.needs_shipping:
        cart = await client.set_shipping_address(cart.id, ADDRESS)
        available = await client.get_available_shipping_methods(cart.id)
        selections = [
            ShippingSelection(
                bag_id=b.bag_id, shipping_method_id=b.shipping_methods[0].shipping_method_id
            )
            for b in available
        ]
        cart = await client.set_shipping_methods(cart.id, selections)
    cart = await client.apply_payment(cart.id, payment)
    return await client.price_cart(cart.id)
