"""The same 7-call Violet checkout as one DBOS Transact workflow, one step per Violet call.

Contender (c) of the throughput bench: a general-purpose durable-execution engine on the same
Postgres, with the same `VioletClient`. Steps return small dicts (ids only), which favours DBOS:
the orchestrator stores more per step (audit summaries, totals, per-bag status).
DBOS is a process-wide singleton: `launch()` once per process, after this module is imported.
"""

from __future__ import annotations

import logging
from typing import Any

from dbos import DBOS

from orchestrator.violet import (
    Address,
    Customer,
    ShippingSelection,
    SkuLine,
    TokenPayment,
    VioletClient,
)

_client: VioletClient | None = None


def set_client(client: VioletClient) -> None:
    """The client every step uses (steps cannot take it as an argument: inputs are stored)."""
    global _client
    _client = client


def _violet() -> VioletClient:
    assert _client is not None, "call set_client() first"
    return _client


def launch(db_url: str, *, pool_size: int = 20) -> None:
    """Start DBOS with its system tables in `db_url`'s database (schema `dbos`)."""
    url = db_url.replace("postgresql+psycopg://", "postgresql://")
    DBOS(
        config={
            "name": "bench-dbos",
            "system_database_url": url,
            "sys_db_pool_size": pool_size,
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    logging.getLogger("dbos").setLevel(logging.WARNING)


def shutdown() -> None:
    DBOS.destroy()


@DBOS.step()
async def create_cart(app_order_id: str, sku_id: int) -> int:
    cart = await _violet().create_cart(
        skus=[SkuLine(sku_id=sku_id, quantity=1)], app_order_id=app_order_id, currency="USD"
    )
    return cart.id


@DBOS.step()
async def apply_customer(cart_id: int, customer: dict[str, Any], address: dict[str, Any]) -> int:
    addr = Address.model_validate(address)
    cart = await _violet().apply_customer(
        cart_id,
        Customer(
            first_name=customer["first_name"],
            last_name=customer["last_name"],
            email=customer["email"],
            shipping_address=addr,
            billing_address=addr,
            same_address=True,
        ),
    )
    return cart.id


@DBOS.step()
async def shipping_available(cart_id: int) -> list[tuple[int, str]]:
    offers = await _violet().get_available_shipping_methods(cart_id)
    return [
        (o.bag_id, min(o.shipping_methods, key=lambda m: m.price or 0).shipping_method_id)
        for o in offers
    ]


@DBOS.step()
async def set_shipping(cart_id: int, choices: list[tuple[int, str]]) -> int:
    selections = [ShippingSelection(bag_id=b, shipping_method_id=m) for b, m in choices]
    cart = await _violet().set_shipping_methods(cart_id, selections)
    return cart.id


@DBOS.step()
async def apply_payment(cart_id: int, token: str, provider: str) -> int:
    cart = await _violet().apply_payment(
        cart_id, TokenPayment(token=token, payment_provider=provider)
    )
    return cart.id


@DBOS.step()
async def price(cart_id: int) -> int | None:
    cart = await _violet().price_cart(cart_id)
    return cart.total


@DBOS.step()
async def submit(cart_id: int, app_order_id: str) -> str | None:
    cart = await _violet().submit(cart_id, app_order_id=app_order_id)
    return cart.status


@DBOS.workflow()
async def checkout(request: dict[str, Any]) -> str | None:
    """One checkout; the workflow id defaults to a fresh uuid (DBOS stores inputs and outputs)."""
    cart_id = await create_cart(request["app_order_id"], request["skus"][0]["sku_id"])
    await apply_customer(cart_id, request["customer"], request["shipping_address"])
    choices = await shipping_available(cart_id)
    await set_shipping(cart_id, choices)
    payment = request["payment"]
    await apply_payment(cart_id, payment["token"], payment["provider"])
    await price(cart_id)
    return await submit(cart_id, request["app_order_id"])
