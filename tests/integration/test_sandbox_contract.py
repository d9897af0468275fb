"""The sandbox answers in Violet's shapes: each saved real sandbox response (samples/) is
reproduced by driving the local sandbox into the same situation, then key sets and value types
are compared recursively (values are not).

A key the sample has and the sandbox deliberately omits is listed in ``NOT_PRODUCED`` with its
reason; anything else missing, or of another JSON type, fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sandbox import SandboxControl
from tests.fixtures.sandbox import CUSTOMER, NY_ADDRESS, RawViolet, prepare_cart
from tests.samples import SAMPLES

NOT_PRODUCED: dict[str, str] = {
    # Paths use "[]" for "any element of the list".
}
"""Sample keys the sandbox does not produce, and why. Empty: every sample key is produced."""

Schema = dict[str, Any]


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def infer(value: Any) -> Schema:
    """A schema from one sample value; list elements are merged (required = in every element)."""
    kind = _type(value)
    if kind == "object":
        return {"types": {"object"}, "keys": {k: infer(v) for k, v in value.items()}}
    if kind == "array":
        items = [infer(v) for v in value]
        element = items[0] if items else None
        for other in items[1:]:
            element = merge(element, other) if element is not None else other
        return {"types": {"array"}, "element": element}
    return {"types": {kind}}


def merge(a: Schema, b: Schema) -> Schema:
    out: Schema = {"types": a["types"] | b["types"]}
    if "keys" in a and "keys" in b:
        shared = a["keys"].keys() & b["keys"].keys()
        out["keys"] = {k: merge(a["keys"][k], b["keys"][k]) for k in shared}
        optional = {k: v for k, v in {**a["keys"], **b["keys"]}.items() if k not in shared}
        out["optional"] = {**a.get("optional", {}), **b.get("optional", {}), **optional}
    else:
        out["keys"] = a.get("keys") or b.get("keys") or {}
    element_a, element_b = a.get("element"), b.get("element")
    if element_a is not None and element_b is not None:
        out["element"] = merge(element_a, element_b)
    else:
        out["element"] = element_a or element_b
    return out


def check(actual: Any, schema: Schema, path: str = "") -> list[str]:
    """Problems with ``actual`` against the sample's schema (empty when it conforms)."""
    kind = _type(actual)
    allowed = schema["types"]
    widened = kind == "integer" and "number" in allowed
    if kind not in allowed and not widened and "null" not in allowed:
        return [f"{path or '<root>'}: {kind}, sample has {'/'.join(sorted(allowed))}"]
    problems: list[str] = []
    if kind == "object":
        for key, sub in schema.get("keys", {}).items():
            where = f"{path}.{key}" if path else key
            if key not in actual:
                if where not in NOT_PRODUCED:
                    problems.append(f"{where}: missing")
                continue
            problems += check(actual[key], sub, where)
        for key, sub in schema.get("optional", {}).items():
            if key in actual:
                problems += check(actual[key], sub, f"{path}.{key}" if path else key)
    elif kind == "array" and schema.get("element") is not None:
        for item in actual:
            problems += check(item, schema["element"], f"{path}[]")
    return problems


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def assert_shaped_like(actual: Any, sample_name: str) -> None:
    problems = check(actual, infer(sample(sample_name)))
    assert not problems, f"{sample_name}:\n" + "\n".join(problems)


def test_checker_detects_missing_keys_and_wrong_types() -> None:
    """Guards the guard: a checker that passes everything would make this file worthless."""
    schema = infer({"a": 1, "b": [{"c": "x", "d": 1.5}], "e": {"f": True}})
    assert check({"a": 2, "b": [{"c": "y", "d": 2}], "e": {"f": False}}, schema) == []
    assert check({"a": "2", "b": [], "e": {"f": False}}, schema) == [
        "a: string, sample has integer"
    ]
    assert check({"a": 1, "b": [{"d": 1.0}], "e": {}}, schema) == ["b[].c: missing", "e.f: missing"]


async def test_empty_new_cart_matches_74599(sandbox_violet: RawViolet) -> None:
    created = await sandbox_violet.post("/checkout/cart", json={"base_currency": "USD", "skus": []})
    assert created.status_code == 200
    fetched = await sandbox_violet.get(f"/checkout/cart/{created.json()['id']}")
    for body in (created.json(), fetched.json()):
        assert_shaped_like(body, "cart_74599_get_empty_new_cart.json")
        assert body["bags"] == [] and body["priced"] is False and "sub_total" not in body


async def test_two_bags_unpriced_with_customer_matches_73936(sandbox_violet: RawViolet) -> None:
    customer = {**CUSTOMER, "billing_address": NY_ADDRESS}
    cart = await prepare_cart(
        sandbox_violet, [196777, 196650], customer=customer, shipping=None, payment=None
    )
    fetched = (await sandbox_violet.get(f"/checkout/cart/{cart['id']}")).json()
    assert_shaped_like(fetched, "cart_73936_get_two_bags_unpriced.json")
    assert len(fetched["bags"]) == 2 and fetched["priced"] is False
    assert "total" not in fetched  # like the sample: unpriced carts carry no total


async def test_shipping_available_matches_73936_74445_and_72500(sandbox_violet: RawViolet) -> None:
    cart = await prepare_cart(sandbox_violet, [196777, 196592], shipping=None, payment=None)
    available = (await sandbox_violet.get(f"/checkout/cart/{cart['id']}/shipping/available")).json()
    assert_shaped_like(available, "shipping_available_73936_two_bags.json")
    assert_shaped_like(available, "shipping_available_74445_two_bags.json")
    assert [len(e["shipping_methods"]) for e in available] == [2, 1]  # as in 74445

    flaky = await prepare_cart(sandbox_violet, [400001], shipping=None, payment=None)
    ground = (await sandbox_violet.get(f"/checkout/cart/{flaky['id']}/shipping/available")).json()
    assert_shaped_like(ground, "shipping_available_72500_one_bag_with_carrier.json")
    assert ground[0]["shipping_methods"][0]["shipping_method_id"] == "ground"


async def test_priced_two_bags_with_shipping_matches_74445(sandbox_violet: RawViolet) -> None:
    cart = await prepare_cart(
        sandbox_violet,
        [196777, 196592, 196650],
        customer={**CUSTOMER, "billing_address": NY_ADDRESS},
        shipping="dearest",
        payment={"intent_based_capture": True},
    )
    priced = await sandbox_violet.get(f"/checkout/cart/{cart['id']}/price")
    fetched = (await sandbox_violet.get(f"/checkout/cart/{cart['id']}")).json()
    for body in (priced.json(), fetched):
        assert_shaped_like(body, "cart_74445_get_two_bags_priced_shipping_applied.json")
        assert body["priced"] is True
        assert body["payment_intent_client_secret"].startswith("pi_")


async def test_completed_order_matches_74688(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    cart = await prepare_cart(
        sandbox_violet,
        [196777],
        customer={**CUSTOMER, "billing_address": NY_ADDRESS},
        shipping="dearest",
        payment={"intent_based_capture": True},
    )
    await sandbox_control.confirm_payment(cart["id"])
    submitted = await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    fetched = (await sandbox_violet.get(f"/checkout/cart/{cart['id']}")).json()
    for body in (submitted.json(), fetched):
        assert_shaped_like(body, "cart_74688_get_after_submit_COMPLETED.json")
        assert body["status"] == "COMPLETED"
        assert body["bags"][0]["transactions"][0]["type"] == "CAPTURE"


async def test_cart_with_bag_error_matches_73791(sandbox_violet: RawViolet) -> None:
    """Sample 73791 is a 200 carrying an errors[] entry for one of two bags (ECWID + SHOPIFY);
    the out-of-stock SKU on Space Drinks plus Flaky Goods (ECWID) reproduce that."""
    customer = {**CUSTOMER, "billing_address": NY_ADDRESS}
    cart = await prepare_cart(
        sandbox_violet, [400001, 196999], customer=customer, shipping=None, payment=None
    )
    fetched = (await sandbox_violet.get(f"/checkout/cart/{cart['id']}")).json()
    assert_shaped_like(fetched, "cart_73791_two_bags_with_EXTERNAL_CREATE_CART_error.json")
    assert fetched["status"] == "IN_PROGRESS"
    (error,) = fetched["errors"]
    assert error["type"] == "EXTERNAL_ADD_ITEM"
    sample_error = sample("cart_73791_two_bags_with_EXTERNAL_CREATE_CART_error.json")["errors"][0]
    assert check(error, infer(sample_error)) == []
    assert {b["platform"] for b in fetched["bags"]} == {"ECWID", "SHOPIFY"}


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in SAMPLES.glob("*.json")) if SAMPLES.is_dir() else [],
)
def test_every_sample_is_covered(name: str) -> None:
    """A sample added to the shared folder must get a contract test here."""
    covered = Path(__file__).read_text()
    assert name in covered
