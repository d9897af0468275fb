"""Cart and order behaviour of the sandbox: catalog quirks, order rules, pricing, submit-once,
multi-merchant partial rejection, search, delete and cancel (in-process, raw HTTP calls)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.sandbox import SandboxControl
from tests.fixtures.sandbox import CUSTOMER, NY_ADDRESS, TOKEN_VISA, RawViolet, prepare_cart


def error_of(response: Any) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"code", "error", "message"}, body
    assert body["code"] == response.status_code
    return response.status_code, body["error"], body["message"]


# -- catalog -----------------------------------------------------------------------------------


async def test_cart_has_one_bag_per_merchant_and_order_sku_ids_differ_from_sku_ids(
    sandbox_violet: RawViolet,
) -> None:
    response = await sandbox_violet.post(
        "/checkout/cart",
        json={"base_currency": "USD", "skus": [{"sku_id": 196777, "quantity": 2},
                                               {"sku_id": 196592}, {"sku_id": 196650}]},
    )  # fmt: skip
    assert response.status_code == 200
    cart = response.json()
    assert isinstance(cart["id"], int)
    assert sorted(b["merchant_id"] for b in cart["bags"]) == [10068, 10189]
    skus = [s for b in cart["bags"] for s in b["skus"]]
    assert {s["sku_id"] for s in skus} == {196777, 196592, 196650}
    assert all(s["id"] != s["sku_id"] for s in skus)
    space = next(b for b in cart["bags"] if b["merchant_id"] == 10068)
    assert space["skus"][0]["quantity"] == 2 and space["skus"][0]["line_price"] == 2000
    assert cart["sub_total"] == 2000 + 3500 + 19500


async def test_unknown_sku_is_404_and_creates_no_cart(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    response = await sandbox_violet.post("/checkout/cart", json={"skus": [{"sku_id": 123}]})
    assert error_of(response) == (404, "sku_not_found", "sku_id 123 not found")
    assert (await sandbox_control.stats())["carts_created"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"skus": [{"sku_id": 196777, "quantity": 0}]}, "skus[0].quantity"),
        ({"skus": [{"sku_id": "abc"}]}, "skus[0].sku_id"),
        ({"skus": [{"quantity": 1}]}, "skus[0].sku_id"),
        ({"skus": [{"sku_id": 196777}, {"sku_id": 196777, "quantity": True}]}, "skus[1].quantity"),
        ({"skus": {"sku_id": 196777}}, "skus"),
        ({"base_currency": "XYZ", "skus": []}, "base_currency"),
        ({"base_currency": 5, "skus": []}, "base_currency"),
        ({"skus": [], "wallet_based_checkout": "yes"}, "wallet_based_checkout"),
        ({"skus": [], "customer": {"first_name": "A", "last_name": "B"}}, "customer.email"),
    ],
)
async def test_malformed_create_cart_is_400_naming_the_field(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl, body: dict[str, Any], field: str
) -> None:
    status, _, message = error_of(await sandbox_violet.post("/checkout/cart", json=body))
    assert status == 400
    assert message.startswith(field + " ")
    assert (await sandbox_control.stats())["carts_created"] == 0


async def test_out_of_stock_sku_is_200_with_an_error_and_blocks_submit(
    sandbox_violet: RawViolet,
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777, 196999])
    sku = next(s for b in cart["bags"] for s in b["skus"] if s["sku_id"] == 196999)
    assert sku["available"] is False
    (error,) = cart["errors"]
    assert error["type"] == "EXTERNAL_ADD_ITEM" and error["entity_type"] == "SKU"
    assert error["entity_id"] == "196999" and "out of stock" in error["message"]
    assert error["bag_id"] == cart["bags"][0]["id"]
    submit = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    assert error_of(submit)[:2] == (400, "cart_has_errors")


async def test_async_error_sku_shows_its_error_from_the_next_call_on(
    sandbox_violet: RawViolet,
) -> None:
    created = (
        await sandbox_violet.post("/checkout/cart", json={"skus": [{"sku_id": 196888}]})
    ).json()
    assert created["errors"] == []
    later = (await sandbox_violet.get(f"/checkout/cart/{created['id']}")).json()
    (error,) = later["errors"]
    assert (error["type"], error["entity_id"]) == ("EXTERNAL_ADD_ITEM", "196888")
    again = (await sandbox_violet.get(f"/checkout/cart/{created['id']}")).json()
    assert again["errors"] == later["errors"]  # surfaced once, not duplicated


# -- order rules ---------------------------------------------------------------------------


async def test_payment_before_customer_is_refused(sandbox_violet: RawViolet) -> None:
    cart = await prepare_cart(sandbox_violet, [196777], customer=None, shipping=None, payment=None)
    response = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/payment", json=TOKEN_VISA)
    status, error, message = error_of(response)
    assert (status, error) == (400, "customer_required") and "customer" in message


async def test_shipping_before_customer_or_address_is_refused(sandbox_violet: RawViolet) -> None:
    cart = await prepare_cart(sandbox_violet, [196777], customer=None, shipping=None, payment=None)
    cart_id = cart["id"]
    bag_id = cart["bags"][0]["id"]
    choice = [{"bag_id": bag_id, "shipping_method_id": "9e912b3dae9b0e04b6f1facf08aa7cb2"}]
    response = await sandbox_violet.post(f"/checkout/cart/{cart_id}/shipping", json=choice)
    assert error_of(response)[:2] == (400, "customer_required")

    no_address = {k: v for k, v in CUSTOMER.items() if k != "shipping_address"}
    await sandbox_violet.post(f"/checkout/cart/{cart_id}/customer", json=no_address)
    response = await sandbox_violet.post(f"/checkout/cart/{cart_id}/shipping", json=choice)
    assert error_of(response)[:2] == (400, "shipping_address_required")
    available = await sandbox_violet.get(f"/checkout/cart/{cart_id}/shipping/available")
    assert error_of(available)[:2] == (400, "shipping_address_required")

    await sandbox_violet.post(f"/checkout/cart/{cart_id}/shipping_address", json=NY_ADDRESS)
    response = await sandbox_violet.post(f"/checkout/cart/{cart_id}/shipping", json=choice)
    assert response.status_code == 200
    assert response.json()["bags"][0]["shipping_method"]["label"] == "Economy"


@pytest.mark.parametrize(
    ("choice", "error", "field"),
    [
        ({"bag_id": 1, "shipping_method_id": "x"}, "invalid_request_body", "request body"),
        ([{"shipping_method_id": "x"}], "missing_field", "[0].bag_id"),
        ([{"bag_id": 1, "shipping_method_id": "x"}], "bag_not_found", "[0].bag_id"),
        ([{"bag_id": "BAG", "shipping_method_id": "nope"}], "invalid_shipping_method",
         "[0].shipping_method_id"),
    ],
)  # fmt: skip
async def test_bad_shipping_choices_are_400_naming_the_field(
    sandbox_violet: RawViolet, choice: Any, error: str, field: str
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777], shipping=None, payment=None)
    if isinstance(choice, list) and choice[0].get("bag_id") == "BAG":
        choice = [{**choice[0], "bag_id": cart["bags"][0]["id"]}]
    response = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/shipping", json=choice)
    status, kind, message = error_of(response)
    assert (status, kind) == (400, error)
    assert message.startswith(field)


async def test_submit_without_payment_is_refused(sandbox_violet: RawViolet) -> None:
    cart = await prepare_cart(sandbox_violet, [196777], payment=None)
    response = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    assert error_of(response)[:2] == (400, "payment_method_required")


async def test_submit_with_a_physical_bag_lacking_shipping_is_refused(
    sandbox_violet: RawViolet,
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777, 300001], shipping=None)
    physical = next(b for b in cart["bags"] if b["merchant_id"] == 10068)
    response = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    status, error, message = error_of(response)
    assert (status, error) == (400, "shipping_method_required")
    assert str(physical["id"]) in message


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]"])
async def test_submit_needs_a_json_object_body(sandbox_violet: RawViolet, content: bytes) -> None:
    cart = await prepare_cart(sandbox_violet, [196777])
    response = await sandbox_violet.post(
        f"/checkout/cart/{cart['id']}/submit",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    status, error, message = error_of(response)
    assert (status, error) == (400, "invalid_request_body")
    assert "request body" in message


async def test_changes_after_submit_are_refused(sandbox_violet: RawViolet) -> None:
    cart = await prepare_cart(sandbox_violet, [196777])
    await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    response = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/customer", json=CUSTOMER)
    assert error_of(response)[:2] == (400, "cart_not_in_progress")


# -- pricing -----------------------------------------------------------------------------------


def assert_totals_consistent(cart: dict[str, Any]) -> None:
    for bag in cart["bags"]:
        assert bag["total"] == (
            bag["sub_total"] + bag["shipping_total"] + bag["tax_total"] - bag["discount_total"]
        )
        assert bag["tax_total"] == sum(t["amount"] for t in bag["taxes"])
    for key in ("sub_total", "shipping_total", "tax_total", "discount_total", "total"):
        assert cart[key] == sum(b[key] for b in cart["bags"]), key


async def test_set_shipping_leaves_the_cart_unpriced_and_price_prices_it(
    sandbox_violet: RawViolet,
) -> None:
    shipped = await prepare_cart(sandbox_violet, [196777, 196592], shipping="dearest", payment=None)
    assert shipped["priced"] is False and shipped["tax_total"] == 0  # Violet quirk, README §2.4
    assert shipped["shipping_total"] == 990
    priced = (await sandbox_violet.get(f"/checkout/cart/{shipped['id']}/price")).json()
    assert priced["priced"] is True
    # 8.875 % NY sales tax on physical goods, per bag: 1000 -> 89, 3500 -> 311
    assert [b["tax_total"] for b in priced["bags"]] == [89, 311]
    assert priced["total"] == 1000 + 3500 + 990 + 400
    assert_totals_consistent(priced)


async def test_digital_goods_need_no_shipping_and_pay_no_tax(sandbox_violet: RawViolet) -> None:
    cart = await prepare_cart(sandbox_violet, [300001, 300002], shipping=None)
    available = await sandbox_violet.get(f"/checkout/cart/{cart['id']}/shipping/available")
    assert available.json() == []
    order = (await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})).json()
    assert order["status"] == "COMPLETED"
    assert order["tax_total"] == 0 and order["total"] == 1700
    assert_totals_consistent(order)


async def test_submit_prices_a_cart_that_was_never_priced(sandbox_violet: RawViolet) -> None:
    cart = await prepare_cart(sandbox_violet, [196650])
    assert cart["priced"] is False
    order = (await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})).json()
    assert order["priced"] is True and order["tax_total"] == 1731  # 8.875 % of 19500
    assert_totals_consistent(order)


async def test_other_currency_converts_prices(sandbox_violet: RawViolet) -> None:
    response = await sandbox_violet.post(
        "/checkout/cart", json={"base_currency": "EUR", "skus": [{"sku_id": 196777}]}
    )
    cart = response.json()
    assert (cart["currency"], cart["currency_symbol"]) == ("EUR", "€")
    assert cart["sub_total"] == 920


# -- submit --------------------------------------------------------------------------------


async def test_successful_submit_completes_the_order(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777], shipping="dearest")
    order = (await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})).json()
    assert order["status"] == "COMPLETED" and order["date_submitted"]
    (bag,) = order["bags"]
    assert (bag["status"], bag["financial_status"]) == ("ACCEPTED", "PAID")
    assert bag["external_id"]
    (capture,) = bag["transactions"]
    assert (capture["type"], capture["status"], capture["amount"]) == (
        "CAPTURE", "COMPLETED", bag["total"],
    )  # fmt: skip
    assert (await sandbox_control.stats())["submits"] == {str(cart["id"]): 1}


async def test_a_second_submit_creates_no_second_order_and_is_counted(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777])
    first = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    second = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    assert second.status_code == 200 and second.json() == first.json()
    stats = await sandbox_control.stats()
    assert stats["submits"] == {str(cart["id"]): 1}
    assert stats["duplicate_submits"] == {str(cart["id"]): 1}
    assert (await sandbox_control.cart(cart["id"]))["duplicate_submits"] == 1


async def test_multi_merchant_cart_is_partly_accepted(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777, 400001])
    response = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    assert response.status_code == 200
    order = response.json()
    assert order["status"] == "COMPLETED"
    bags = {b["merchant_id"]: b for b in order["bags"]}
    assert (bags[10068]["status"], bags[10068]["financial_status"]) == ("ACCEPTED", "PAID")
    assert (bags[10400]["status"], bags[10400]["financial_status"]) == ("REJECTED", "VOIDED")
    assert bags[10400]["transactions"] == []
    (error,) = order["errors"]
    assert (error["type"], error["bag_id"]) == ("EXTERNAL_SUBMIT_CART", bags[10400]["id"])
    assert (await sandbox_control.stats())["submits"] == {str(order["id"]): 1}


async def test_a_cart_whose_only_bag_is_rejected_fails_with_400(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    cart = await prepare_cart(sandbox_violet, [400001])
    response = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    assert error_of(response)[:2] == (400, "external_submit_failed")
    after = (await sandbox_violet.get(f"/checkout/cart/{cart['id']}")).json()
    assert after["status"] == "IN_PROGRESS"
    assert after["bags"][0]["status"] == "REJECTED"
    assert [e["type"] for e in after["errors"]] == ["EXTERNAL_SUBMIT_CART"]
    again = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    assert again.status_code == 400
    assert len((await sandbox_violet.get(f"/checkout/cart/{cart['id']}")).json()["errors"]) == 1
    assert (await sandbox_control.stats())["submits"] == {}


# -- orders: read, search, delete, cancel ------------------------------------------------------


async def test_search_by_app_order_id_excludes_in_progress_carts_by_default(
    sandbox_violet: RawViolet,
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777], app_order_id="order-42")
    await prepare_cart(sandbox_violet, [196777], app_order_id="order-other")

    async def search(**params: str) -> dict[str, Any]:
        response = await sandbox_violet.post(
            "/orders/search", params=params, json={"app_order_id": "order-42"}
        )
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    default = await search()
    assert default["content"] == [] and default["empty"] is True
    including = await search(exclude_in_progress="false")
    assert [c["id"] for c in including["content"]] == [cart["id"]]
    assert {k: including[k] for k in ("total_elements", "total_pages", "first", "last")} == {
        "total_elements": 1, "total_pages": 1, "first": True, "last": True,
    }  # fmt: skip
    await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    submitted = await search()
    assert [(c["id"], c["status"]) for c in submitted["content"]] == [(cart["id"], "COMPLETED")]


async def test_search_pages(sandbox_violet: RawViolet) -> None:
    ids = [(await prepare_cart(sandbox_violet, [300001], shipping=None))["id"] for _ in range(3)]
    for cart_id in ids:
        await sandbox_violet.post(f"/checkout/cart/{cart_id}/submit", json={})
    response = await sandbox_violet.post("/orders/search", params={"page": 2, "size": 2}, json={})
    page = response.json()
    assert [c["id"] for c in page["content"]] == ids[2:]
    assert (page["number"], page["total_pages"], page["last"], page["first"]) == (1, 2, True, False)


async def test_get_order_returns_the_submitted_cart(sandbox_violet: RawViolet) -> None:
    cart = await prepare_cart(sandbox_violet, [196777])
    submitted = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    order = await sandbox_violet.get(f"/orders/{cart['id']}")
    assert order.status_code == 200 and order.json() == submitted.json()
    missing = await sandbox_violet.get("/orders/1")
    assert error_of(missing) == (404, "order_not_found", "order 1 not found")


async def test_delete_releases_an_in_progress_cart_only(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    cart = await prepare_cart(sandbox_violet, [196777], app_order_id="gone")
    deleted = await sandbox_violet.delete(f"/checkout/cart/{cart['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await sandbox_violet.get(f"/checkout/cart/{cart['id']}")).status_code == 404
    search = await sandbox_violet.post(
        "/orders/search", params={"exclude_in_progress": "false"}, json={"app_order_id": "gone"}
    )
    assert search.json()["content"] == []
    assert (await sandbox_control.stats())["deleted_carts"] == [cart["id"]]

    other = await prepare_cart(sandbox_violet, [196777])
    await sandbox_violet.post(f"/checkout/cart/{other['id']}/submit", json={})
    refused = await sandbox_violet.delete(f"/checkout/cart/{other['id']}")
    assert error_of(refused)[:2] == (400, "cart_not_in_progress")


async def test_cancel_order(sandbox_violet: RawViolet) -> None:
    cart = await prepare_cart(sandbox_violet, [196777])
    early = await sandbox_violet.post(f"/orders/{cart['id']}/cancel", json={})
    assert early.status_code == 202 and early.json()["status"] == "CANCELLATION_FAILURE"
    await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    canceled = await sandbox_violet.post(f"/orders/{cart['id']}/cancel", json={"reason": "test"})
    assert canceled.status_code == 202
    body = canceled.json()
    assert body["status"] == "CANCELED" and len(body["cancelled_bags"]) == 1
    order = (await sandbox_violet.get(f"/orders/{cart['id']}")).json()
    assert order["status"] == "CANCELED" and order["bags"][0]["status"] == "CANCELED"


async def test_unknown_cart_and_route_are_404(sandbox_violet: RawViolet) -> None:
    assert error_of(await sandbox_violet.get("/checkout/cart/5")) == (
        404, "cart_not_found", "cart 5 not found",
    )  # fmt: skip
    assert error_of(await sandbox_violet.get("/checkout/cart/abc"))[:2] == (
        400, "invalid_parameter",
    )  # fmt: skip
    assert error_of(await sandbox_violet.get("/nope"))[:2] == (404, "not_found")
