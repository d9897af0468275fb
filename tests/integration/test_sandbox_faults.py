"""Fault injection over the in-process transport: each kind fails the way a real network or a
struggling Violet would, and applies (or does not apply) the change exactly as documented."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from orchestrator.sandbox import SandboxControl
from orchestrator.sandbox.faults import OPS
from tests.fixtures.sandbox import RawViolet, prepare_cart

NEW_CART: dict[str, Any] = {"skus": [{"sku_id": 196777}], "app_order_id": "fault-1"}


async def carts_created(control: SandboxControl) -> int:
    return int((await control.stats())["carts_created"])


async def test_error_fault_answers_503_without_applying(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("create_cart", "error", count=2)
    for _ in range(2):
        response = await sandbox_violet.post("/checkout/cart", json=NEW_CART)
        assert response.status_code == 503
        assert set(response.json()) == {"code", "error", "message"}
    assert await carts_created(sandbox_control) == 0
    assert (await sandbox_violet.post("/checkout/cart", json=NEW_CART)).status_code == 200
    assert await carts_created(sandbox_control) == 1


async def test_error_fault_with_another_status(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("search_orders", "error", status=500)
    assert (await sandbox_violet.post("/orders/search", json={})).status_code == 500


async def test_rate_limit_fault_is_429_with_retry_after(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("create_cart", "rate_limit", retry_after=2.5)
    response = await sandbox_violet.post("/checkout/cart", json=NEW_CART)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2.5"
    assert await carts_created(sandbox_control) == 0


async def test_latency_fault_delays_but_applies(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("create_cart", "latency", latency_ms=5)
    assert (await sandbox_violet.post("/checkout/cart", json=NEW_CART)).status_code == 200
    (call,) = await sandbox_control.calls("create_cart")
    assert (call["fault"], call["status"]) == ("latency", 200)


async def test_timeout_fault_hangs_without_applying(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("create_cart", "timeout", latency_ms=60_000)
    with pytest.raises(httpx.ReadTimeout):
        await sandbox_violet.post("/checkout/cart", json=NEW_CART, timeout=0.2)
    assert await carts_created(sandbox_control) == 0
    (call,) = await sandbox_control.calls("create_cart")
    assert (call["fault"], call["status"]) == ("timeout", None)


async def test_timeout_fault_shorter_than_the_client_timeout_then_answers(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("create_cart", "timeout", latency_ms=1)
    assert (await sandbox_violet.post("/checkout/cart", json=NEW_CART)).status_code == 200
    assert await carts_created(sandbox_control) == 1


async def test_drop_before_apply_loses_the_request(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("create_cart", "drop_before_apply")
    with pytest.raises(httpx.RemoteProtocolError):
        await sandbox_violet.post("/checkout/cart", json=NEW_CART)
    assert await carts_created(sandbox_control) == 0


async def test_drop_after_apply_loses_only_the_answer(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("create_cart", "drop_after_apply")
    with pytest.raises(httpx.RemoteProtocolError):
        await sandbox_violet.post("/checkout/cart", json=NEW_CART)
    stats = await sandbox_control.stats()
    assert stats["carts_created"] == 1
    (cart_id,) = stats["carts_by_app_order_id"]["fault-1"]
    found = await sandbox_violet.post(
        "/orders/search", params={"exclude_in_progress": "false"}, json={"app_order_id": "fault-1"}
    )
    assert [c["id"] for c in found.json()["content"]] == [cart_id]


async def test_drop_after_apply_on_submit_leaves_a_completed_order(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777])
    await prepare_cart(sandbox_violet, [196777])  # another cart's calls stay out of the log below
    await sandbox_control.add_fault("submit", "drop_after_apply")
    with pytest.raises(httpx.RemoteProtocolError):
        await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    calls = await sandbox_control.calls(cart_id=cart["id"])
    assert [(c["op"], c["status"], c["fault"]) for c in calls] == [
        ("create_cart", 200, None),
        ("customer", 200, None),
        ("shipping_available", 200, None),
        ("set_shipping", 200, None),
        ("payment", 200, None),
        ("submit", None, "drop_after_apply"),
    ]
    after = (await sandbox_violet.get(f"/checkout/cart/{cart['id']}")).json()
    assert after["status"] == "COMPLETED"
    assert (await sandbox_control.stats())["submits"] == {str(cart["id"]): 1}


async def test_delay_after_apply_applies_then_keeps_the_client_waiting(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("create_cart", "delay_after_apply", latency_ms=60_000)
    with pytest.raises(httpx.ReadTimeout):
        await sandbox_violet.post("/checkout/cart", json=NEW_CART, timeout=0.2)
    assert await carts_created(sandbox_control) == 1


async def test_probability_faults_follow_the_seed(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    async def pattern() -> list[int]:
        await sandbox_control.add_fault("search_orders", "error", probability=0.5)
        statuses = [
            (await sandbox_violet.post("/orders/search", json={})).status_code for _ in range(40)
        ]
        await sandbox_control.clear_faults()
        return statuses

    first = await pattern()
    assert {200, 503} == set(first)
    await sandbox_control.reset()  # reseeds the RNG
    assert await pattern() == first


async def test_wildcard_fault_and_clearing(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("*", "error", count=5)
    assert (await sandbox_violet.get("/checkout/cart/80000")).status_code == 503
    assert (await sandbox_violet.post("/orders/search", json={})).status_code == 503
    assert [f["remaining"] for f in await sandbox_control.faults()] == [3]
    await sandbox_control.clear_faults()
    assert await sandbox_control.faults() == []
    assert (await sandbox_violet.post("/orders/search", json={})).status_code == 200


async def test_faults_do_not_touch_the_control_surface(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("*", "error", probability=1.0)
    assert (await sandbox_control.stats())["carts_created"] == 0
    await sandbox_control.reset()
    assert (await sandbox_violet.post("/orders/search", json={})).status_code == 200


@pytest.mark.parametrize(
    "spec",
    [
        {"op": "nope", "kind": "error"},
        {"op": "submit", "kind": "explode"},
        {"op": "submit", "kind": "error", "count": 0},
        {"op": "submit", "kind": "error", "probability": 2},
        {"op": "submit", "kind": "error", "status": 200},
    ],
)
async def test_invalid_fault_specs_are_refused(
    sandbox_violet: RawViolet, spec: dict[str, Any]
) -> None:
    response = await sandbox_violet.client.post("http://sandbox/_sandbox/faults", json=spec)
    assert response.status_code == 400


OP_CALLS: dict[str, tuple[str, str]] = {
    "login": ("POST", "/login"),
    "refresh": ("GET", "/auth/token"),
    "create_cart": ("POST", "/checkout/cart"),
    "get_cart": ("GET", "/checkout/cart/{id}"),
    "delete_cart": ("DELETE", "/checkout/cart/{id}"),
    "customer": ("POST", "/checkout/cart/{id}/customer"),
    "shipping_address": ("POST", "/checkout/cart/{id}/shipping_address"),
    "billing_address": ("POST", "/checkout/cart/{id}/billing_address"),
    "shipping_available": ("GET", "/checkout/cart/{id}/shipping/available"),
    "set_shipping": ("POST", "/checkout/cart/{id}/shipping"),
    "price": ("GET", "/checkout/cart/{id}/price"),
    "payment": ("POST", "/checkout/cart/{id}/payment"),
    "payment_update": ("POST", "/checkout/cart/{id}/payment/update"),
    "submit": ("POST", "/checkout/cart/{id}/submit"),
    "get_order": ("GET", "/orders/{id}"),
    "search_orders": ("POST", "/orders/search"),
    "cancel_order": ("POST", "/orders/{id}/cancel"),
}


def test_every_op_has_a_route_here() -> None:
    assert set(OP_CALLS) == set(OPS)


@pytest.mark.parametrize("op", OPS)
async def test_each_op_name_targets_its_endpoint(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl, op: str
) -> None:
    method, path = OP_CALLS[op]
    await sandbox_control.reset()  # forget the fixture's login call
    await sandbox_control.add_fault(op, "error", status=502)
    response = await sandbox_violet.request(method, path.format(id=80000), json={})
    assert response.status_code == 502
    (call,) = await sandbox_control.calls(op)
    assert call["fault"] == "error"
    others = [c for c in await sandbox_control.calls() if c["op"] != op]
    assert others == []
