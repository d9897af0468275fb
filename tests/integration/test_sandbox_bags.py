"""A bag's life after submit in the sandbox, over real HTTP: the merchant moves it along on the
control surface, the orchestrator's cancel and refund endpoints answer 202 (hiding a failure
when asked to), and every read-back shows where the bag really is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchestrator.sandbox.faults import AFTER_SUBMIT_OPS
from tests.fixtures.sandbox import HttpSandbox, RawViolet, prepare_cart


@pytest.fixture
async def violet(http_sandbox: HttpSandbox) -> AsyncIterator[RawViolet]:
    async with httpx.AsyncClient(base_url=http_sandbox.base_url) as client:
        raw = RawViolet(client)
        await raw.login()
        yield raw


async def submitted(violet: RawViolet, skus: list[int] | None = None) -> dict[str, Any]:
    cart = await prepare_cart(violet, skus or [196777])
    response = await violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    assert response.status_code == 200, response.text
    order: dict[str, Any] = response.json()
    return order


async def read_bag(violet: RawViolet, order_id: int, bag_id: int) -> dict[str, Any]:
    response = await violet.get(f"/orders/{order_id}/bags/{bag_id}")
    assert response.status_code == 200, response.text
    bag: dict[str, Any] = response.json()
    return bag


async def test_a_bag_moves_from_submitted_to_completed(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    control = http_sandbox.control
    await control.configure(processing_ms=600_000)  # the merchants wait for the test
    order = await submitted(violet)
    order_id, bag_id = order["id"], order["bags"][0]["id"]
    assert (order["status"], order["bags"][0]["status"]) == ("PROCESSING", "SUBMITTED")
    seen = []
    for action in ("accept", "ship", "deliver", "complete"):
        moved = await control.move_bag(order_id, bag_id, action)
        read = (await violet.get(f"/orders/{order_id}")).json()
        assert read == moved
        bag = await read_bag(violet, order_id, bag_id)
        assert bag == read["bags"][0]
        seen.append((read["status"], bag["status"], bag["fulfillment_status"]))
    assert seen == [
        ("COMPLETED", "ACCEPTED", "PROCESSING"),
        ("COMPLETED", "ACCEPTED", "SHIPPED"),
        ("COMPLETED", "ACCEPTED", "DELIVERED"),
        ("COMPLETED", "COMPLETED", "DELIVERED"),
    ]
    assert [t["type"] for t in bag["transactions"]] == ["CAPTURE"]


async def test_the_merchant_rejects_a_submitted_bag(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    control = http_sandbox.control
    await control.configure(processing_ms=600_000)
    order = await submitted(violet, [196777, 196592])
    first, second = (b["id"] for b in order["bags"])
    await control.move_bag(order["id"], first, "reject")
    still = (await violet.get(f"/orders/{order['id']}")).json()
    assert still["status"] == "PROCESSING"  # the other merchant has not answered yet
    done = await control.move_bag(order["id"], second, "accept")
    assert done["status"] == "COMPLETED"
    assert [(b["status"], b["financial_status"]) for b in done["bags"]] == [
        ("REJECTED", "VOIDED"), ("ACCEPTED", "PAID"),
    ]  # fmt: skip


async def test_illegal_moves_are_refused_and_change_nothing(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    order = await submitted(violet)
    order_id, bag_id = order["id"], order["bags"][0]["id"]
    async with httpx.AsyncClient(base_url=http_sandbox.control_url) as control:
        for action, status in (("accept", 409), ("deliver", 409), ("fly", 400)):
            response = await control.post(f"/orders/{order_id}/bags/{bag_id}/{action}", json={})
            assert response.status_code == status, (action, response.text)
        await control.post(f"/orders/{order_id}/bags/{bag_id}/ship", json={})
        refused = await control.post(f"/orders/{order_id}/bags/{bag_id}/cancel", json={})
        assert (refused.status_code, refused.json()["error"]) == (409, "illegal_move")
        too_much = await control.post(
            f"/orders/{order_id}/bags/{bag_id}/refund", json={"amount": 10**9}
        )
        assert too_much.status_code == 400
    bag = await read_bag(violet, order_id, bag_id)
    assert (bag["status"], bag["fulfillment_status"]) == ("ACCEPTED", "SHIPPED")


async def test_refunds_in_parts_then_in_full(violet: RawViolet, http_sandbox: HttpSandbox) -> None:
    order = await submitted(violet)
    order_id, bag_id = order["id"], order["bags"][0]["id"]
    total = order["bags"][0]["total"]
    part = await violet.post(f"/orders/{order_id}/bags/{bag_id}/refunds", json={"amount": 300})
    assert part.status_code == 202
    assert (part.json()["amount"], part.json()["status"]) == (300, "PROCESSING")
    read = (await violet.get(f"/orders/{order_id}")).json()
    assert (read["status"], read["bags"][0]["status"]) == (
        "PARTIALLY_REFUNDED", "PARTIALLY_REFUNDED",
    )  # fmt: skip
    rest = await violet.post(f"/orders/{order_id}/bags/{bag_id}/refunds", json={"reason": "x"})
    assert rest.status_code == 202 and rest.json()["amount"] == total - 300
    bag = await read_bag(violet, order_id, bag_id)
    assert (bag["status"], bag["financial_status"]) == ("REFUNDED", "REFUNDED")
    refunds = (await violet.get(f"/orders/{order_id}/bags/{bag_id}/refunds")).json()
    assert [(r["amount"], r["status"]) for r in refunds] == [
        (300, "COMPLETED"), (total - 300, "COMPLETED"),
    ]  # fmt: skip
    assert (await violet.get(f"/orders/{order_id}/refunds")).json() == refunds
    assert (await violet.get(f"/orders/{order_id}")).json()["status"] == "REFUNDED"
    more = await violet.post(f"/orders/{order_id}/bags/{bag_id}/refunds", json={"amount": 1})
    assert more.status_code == 202 and more.json()["status"] == "FAILED"
    stats = await http_sandbox.control.stats()
    assert stats["bag_refunds"] == {str(bag_id): 3}


async def test_refund_by_skus_and_bad_refund_bodies(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    order = await submitted(violet)
    order_id, bag = order["id"], order["bags"][0]
    path = f"/orders/{order_id}/bags/{bag['id']}/refunds"
    sku = bag["skus"][0]
    by_sku = await violet.post(path, json={"skus": [{"sku_id": sku["sku_id"], "quantity": 1}]})
    assert by_sku.status_code == 202 and by_sku.json()["amount"] == sku["price"]
    for body in (
        {"amount": 0},
        {"amount": "seven"},
        {"amount": 1.5},
        {"skus": [{"sku_id": 1}]},
        {"amount": 1, "skus": []},
    ):
        response = await violet.post(path, json=body)
        assert response.status_code == 400, body
    missing = await violet.post(f"/orders/{order_id}/bags/1/refunds", json={})
    assert missing.status_code == 404


async def test_cancel_bag_answers_202_and_cancels(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    order = await submitted(violet, [196777, 196592])
    first, second = (b["id"] for b in order["bags"])
    answer = await violet.post(
        f"/orders/{order['id']}/bags/{first}/cancel", json={"reason": "x", "reason_code": "FRAUD"}
    )
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "CANCELED"
    assert [c["bag_id"] for c in body["cancelled_bags"]] == [first]
    read = (await violet.get(f"/orders/{order['id']}")).json()
    assert read["status"] == "COMPLETED"  # one bag lives on
    assert [b["status"] for b in read["bags"]] == ["CANCELED", "ACCEPTED"]
    assert read["bags"][0]["financial_status"] == "REFUNDED"
    again = await violet.post(f"/orders/{order['id']}/bags/{first}/cancel", json={})
    assert again.status_code == 202 and again.json()["status"] == "CANCELED"
    stats = await http_sandbox.control.stats()
    assert stats["bag_cancels"] == {str(first): 2}
    assert str(second) not in stats["bag_cancels"]
    bad = await violet.post(
        f"/orders/{order['id']}/bags/{second}/cancel", json={"reason_code": "BORED"}
    )
    assert bad.status_code == 400


async def test_a_shipped_bag_cannot_be_canceled_and_the_202_says_so(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    order = await submitted(violet, [196777, 196592])
    first, second = (b["id"] for b in order["bags"])
    await http_sandbox.control.move_bag(order["id"], first, "ship")
    one = await violet.post(f"/orders/{order['id']}/bags/{first}/cancel", json={})
    assert one.status_code == 202 and one.json()["status"] == "CANCELLATION_FAILURE"
    whole = await violet.post(f"/orders/{order['id']}/cancel", json={})
    assert whole.status_code == 202
    assert whole.json()["status"] == "PARTIALLY_CANCELED"
    assert [c["bag_id"] for c in whole.json()["cancelled_bags"]] == [second]
    read = (await violet.get(f"/orders/{order['id']}")).json()
    assert [b["status"] for b in read["bags"]] == ["ACCEPTED", "CANCELED"]
    assert (await http_sandbox.control.stats())["order_cancels"] == {str(order["id"]): 1}


@pytest.mark.parametrize("op", ["cancel_bag", "cancel_order"])
async def test_a_silent_failure_hides_behind_the_202(
    violet: RawViolet, http_sandbox: HttpSandbox, op: str
) -> None:
    order = await submitted(violet)
    bag_id = order["bags"][0]["id"]
    path = (
        f"/orders/{order['id']}/bags/{bag_id}/cancel"
        if op == "cancel_bag"
        else (f"/orders/{order['id']}/cancel")
    )
    await http_sandbox.control.add_fault(op, "silent_failure")
    hidden = await violet.post(path, json={})
    assert hidden.status_code == 202
    assert hidden.json()["status"] == "CANCELED"
    assert [c["bag_id"] for c in hidden.json()["cancelled_bags"]] == [bag_id]
    bag = await read_bag(violet, order["id"], bag_id)
    assert (bag["status"], bag["financial_status"]) == ("ACCEPTED", "PAID")
    (call,) = await http_sandbox.control.calls(op)
    assert (call["fault"], call["status"]) == ("silent_failure", 202)
    real = await violet.post(path, json={})  # the fault is spent: this one works
    assert real.json()["status"] == "CANCELED"
    assert (await read_bag(violet, order["id"], bag_id))["status"] == "CANCELED"


async def test_a_silently_failed_refund_is_failed_on_read(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    order = await submitted(violet)
    order_id, bag_id = order["id"], order["bags"][0]["id"]
    await http_sandbox.control.add_fault("refund_bag", "silent_failure")
    hidden = await violet.post(f"/orders/{order_id}/bags/{bag_id}/refunds", json={"amount": 50})
    assert hidden.status_code == 202 and hidden.json()["status"] == "PROCESSING"
    bag = await read_bag(violet, order_id, bag_id)
    assert bag["status"] == "ACCEPTED"
    assert not [t for t in bag["transactions"] if t["type"] == "REFUND"]
    (refund,) = (await violet.get(f"/orders/{order_id}/bags/{bag_id}/refunds")).json()
    assert (refund["id"], refund["status"]) == (hidden.json()["id"], "FAILED")


async def test_silent_failure_only_targets_202_endpoints(http_sandbox: HttpSandbox) -> None:
    async with httpx.AsyncClient(base_url=http_sandbox.control_url) as control:
        response = await control.post("/faults", json={"op": "submit", "kind": "silent_failure"})
        assert response.status_code == 400


AFTER_SUBMIT_CALLS = {
    "cancel_bag": ("POST", "/orders/{id}/bags/600000/cancel"),
    "refund_bag": ("POST", "/orders/{id}/bags/600000/refunds"),
    "get_bag": ("GET", "/orders/{id}/bags/600000"),
    "get_refunds": ("GET", "/orders/{id}/refunds"),
}


def test_every_after_submit_op_has_a_route_here() -> None:
    assert set(AFTER_SUBMIT_CALLS) == set(AFTER_SUBMIT_OPS)


@pytest.mark.parametrize("op", AFTER_SUBMIT_OPS)
async def test_each_after_submit_op_name_targets_its_endpoint(
    violet: RawViolet, http_sandbox: HttpSandbox, op: str
) -> None:
    method, path = AFTER_SUBMIT_CALLS[op]
    await http_sandbox.control.add_fault(op, "error", status=502)
    response = await violet.request(method, path.format(id=80000), json={})
    assert response.status_code == 502
    (call,) = await http_sandbox.control.calls(op)
    assert call["fault"] == "error"
