"""Every real Violet sample parses, and parsing tolerates what Violet may add tomorrow."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter

from orchestrator.violet import (
    Address,
    BagShippingMethods,
    BagStatus,
    CardPayment,
    Cart,
    IntentPayment,
    OrderStatus,
    TokenPayment,
)
from tests.samples import SAMPLES

CART_SAMPLES = [
    "cart_73791_two_bags_with_EXTERNAL_CREATE_CART_error.json",
    "cart_73936_get_two_bags_unpriced.json",
    "cart_74445_get_two_bags_priced_shipping_applied.json",
    "cart_74599_get_empty_new_cart.json",
    "cart_74688_get_after_submit_COMPLETED.json",
]
SHIPPING_SAMPLES = [
    "shipping_available_72500_one_bag_with_carrier.json",
    "shipping_available_73936_two_bags.json",
    "shipping_available_74445_two_bags.json",
]
SHIPPING = TypeAdapter(list[BagShippingMethods])


def _load(name: str) -> bytes:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"sample {path} not available")
    return path.read_bytes()


def test_sample_list_is_complete() -> None:
    if not SAMPLES.exists():
        pytest.skip("samples not available")
    on_disk = {p.name for p in SAMPLES.glob("*.json")}
    assert on_disk == set(CART_SAMPLES) | set(SHIPPING_SAMPLES)


@pytest.mark.parametrize("name", CART_SAMPLES)
def test_cart_samples_parse(name: str) -> None:
    raw = _load(name)
    cart = Cart.model_validate_json(raw)
    data = json.loads(raw)
    assert cart.id == data["id"]
    assert cart.status == data["status"]
    assert len(cart.bags) == len(data["bags"])
    assert len(cart.errors) == len(data.get("errors") or [])


@pytest.mark.parametrize("name", SHIPPING_SAMPLES)
def test_shipping_available_samples_parse(name: str) -> None:
    raw = _load(name)
    bags = SHIPPING.validate_json(raw)
    data = json.loads(raw)
    assert [b.bag_id for b in bags] == [d["bag_id"] for d in data]
    for bag, entry in zip(bags, data, strict=True):
        ids = [m.shipping_method_id for m in bag.shipping_methods]
        assert ids == [m["shipping_method_id"] for m in entry["shipping_methods"]]


def test_sample_semantics() -> None:
    new = Cart.model_validate_json(_load("cart_74599_get_empty_new_cart.json"))
    assert not new.is_submitted and not new.needs_shipping and not new.has_payment
    assert new.priced is False and new.bags == [] and new.errors == []

    errored = Cart.model_validate_json(
        _load("cart_73791_two_bags_with_EXTERNAL_CREATE_CART_error.json")
    )
    assert errored.errors[0].type == "EXTERNAL_CREATE_CART"
    assert errored.errors[0].bag_id == 59464
    assert not errored.is_submitted
    # One of its skus has no product_type at all: counted as physical.
    assert all(b.needs_shipping for b in errored.bags)

    priced = Cart.model_validate_json(_load("cart_74445_get_two_bags_priced_shipping_applied.json"))
    assert priced.priced is True and priced.total == 27032
    assert priced.bags[0].shipping_method is not None
    assert priced.bags[0].shipping_method.shipping_method_id == "b55f835102bc5d6c9dea1c8e93e46baa"
    assert priced.payment_intent_client_secret is not None
    assert "pi_3NsuaaK29KDiBVld1wGy3o22" not in repr(priced)

    done = Cart.model_validate_json(_load("cart_74688_get_after_submit_COMPLETED.json"))
    assert done.status == OrderStatus.COMPLETED and done.is_submitted
    assert [b.id for b in done.accepted_bags] == [60380]
    assert done.rejected_bags == []
    assert done.has_payment
    assert done.bags[0].transactions[0].type == "CAPTURE"


def _cart(**extra: Any) -> dict[str, Any]:
    return {"id": 1, "status": "IN_PROGRESS", "bags": [], "errors": [], **extra}


def test_unknown_fields_and_enum_values_are_tolerated() -> None:
    cart = Cart.model_validate(
        _cart(
            status="TELEPORTED",
            brand_new_field={"x": 1},
            bags=[
                {
                    "id": 5,
                    "status": "LEVITATING",
                    "financial_status": "IN_ESCROW_ON_MARS",
                    "skus": [{"id": 9, "sku_id": 1, "product_type": "HOLOGRAM", "weird": True}],
                    "surprise": [1, 2],
                }
            ],
            errors=[{"type": "EXTERNAL_SOMETHING_NEW", "message": "?", "entity_id": "abc"}],
        )
    )
    assert cart.status == "TELEPORTED"
    assert cart.is_submitted  # anything but IN_PROGRESS counts as past submit
    assert cart.bags[0].needs_shipping  # unknown product type: ship it
    assert cart.errors[0].type == "EXTERNAL_SOMETHING_NEW"


def test_null_lists_become_empty() -> None:
    cart = Cart.model_validate({"id": 2, "bags": None, "errors": None})
    assert cart.bags == [] and cart.errors == []


def test_is_submitted_from_bag_status_alone() -> None:
    cart = Cart.model_validate(_cart(bags=[{"id": 1, "status": BagStatus.SUBMITTED}]))
    assert cart.is_submitted
    cart = Cart.model_validate(_cart(bags=[{"id": 1, "status": BagStatus.IN_PROGRESS}]))
    assert not cart.is_submitted


def test_accepted_and_rejected_bags_and_digital_goods() -> None:
    cart = Cart.model_validate(
        _cart(
            status="COMPLETED",
            bags=[
                {"id": 1, "status": "ACCEPTED", "skus": [{"product_type": "DIGITAL"}]},
                {"id": 2, "status": "REJECTED", "financial_status": "VOIDED", "skus": []},
            ],
        )
    )
    assert [b.id for b in cart.accepted_bags] == [1]
    assert [b.id for b in cart.rejected_bags] == [2]
    assert not cart.needs_shipping


@pytest.mark.parametrize(
    ("bag_status", "meaning"),
    [
        ("ACCEPTED", "accepted"),
        ("COMPLETED", "accepted"),
        ("BACKORDERED", "accepted"),
        ("PARTIALLY_REFUNDED", "accepted"),
        ("REFUNDED", "accepted"),
        ("REJECTED", "rejected"),
        ("CANCELED", "rejected"),
        ("SUBMITTED", "unsettled"),
        ("AUTHORIZED", "unsettled"),  # not a bag status Violet documents: never read as refused
        ("SOMETHING_NEW", "unsettled"),
        ("IN_PROGRESS", "open"),
        (None, "open"),
    ],
)
def test_each_bag_status_is_accepted_rejected_unsettled_or_open(
    bag_status: str | None, meaning: str
) -> None:
    bag = Cart.model_validate(_cart(bags=[{"id": 1, "status": bag_status}])).bags[0]
    found = [
        name
        for name, yes in (
            ("accepted", bag.is_accepted),
            ("rejected", bag.is_rejected),
            ("unsettled", bag.is_unsettled),
        )
        if yes
    ]
    assert found == ([] if meaning == "open" else [meaning])


@pytest.mark.parametrize(
    ("order_status", "bag_statuses", "pending"),
    [
        ("PROCESSING", ["SUBMITTED"], True),
        ("PROCESSING", ["ACCEPTED", "IN_PROGRESS"], True),  # the order itself is not settled
        ("PROCESSING", [], True),
        ("COMPLETED", ["ACCEPTED", "SUBMITTED"], True),
        ("COMPLETED", ["ACCEPTED", "REJECTED"], False),
        ("IN_PROGRESS", ["REJECTED"], False),
        ("IN_PROGRESS", ["IN_PROGRESS"], False),
        ("REQUIRES_ACTION", ["IN_PROGRESS"], False),
    ],
)
def test_a_submit_outcome_is_pending_while_processing_or_a_bag_is_unsettled(
    order_status: str, bag_statuses: list[str], pending: bool
) -> None:
    bags = [{"id": n, "status": status} for n, status in enumerate(bag_statuses, 1)]
    cart = Cart.model_validate(_cart(status=order_status, bags=bags))
    assert cart.outcome_pending is pending


def test_intent_secret_is_lifted_out_of_payment_transactions() -> None:
    secret = "pi_123_secret_abcdef"
    cart = Cart.model_validate(
        _cart(
            payment_transactions=[
                {"id": 7, "metadata": {"payment_intent_client_secret": secret, "x": "y"}}
            ]
        )
    )
    assert cart.payment_intent_client_secret is not None
    assert cart.payment_intent_client_secret.get_secret_value() == secret
    assert cart.has_payment
    assert secret not in repr(cart)
    assert secret not in cart.model_dump_json()
    assert cart.payment_transactions[0]["metadata"] == {"x": "y"}


def test_partial_addresses_from_violet_do_not_fail() -> None:
    cart = Cart.model_validate(
        _cart(
            shipping_address={"city": "Brooklyn", "country": "US", "address_1": None},
            customer={"first_name": "Sand", "user_id": 3},
        )
    )
    assert cart.shipping_address is not None and cart.shipping_address.city == "Brooklyn"
    assert cart.shipping_address.address_1 == ""
    assert cart.customer is not None and cart.customer.email == ""


def test_address_requires_its_fields_when_we_build_one() -> None:
    with pytest.raises(ValueError, match="postal_code"):
        Address(address_1="1 Main St", city="X", state="NY", country="US")  # type: ignore[call-arg]


def test_payment_bodies_and_secret_hiding() -> None:
    card = CardPayment(
        card_number="4242424242424242",
        card_cvc="123",
        card_exp_month=12,
        card_exp_year=2034,
        card_postal_code="11211",
    )
    assert "4242424242424242" not in repr(card) and "123" not in str(card)
    assert card.to_body()["card_number"] == "4242424242424242"
    assert TokenPayment(token="tok_visa").to_body() == {
        "token": "tok_visa",
        "payment_provider": "STRIPE",
    }
    assert IntentPayment().to_body() == {"intent_based_capture": True}
