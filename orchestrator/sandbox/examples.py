"""Ready-made checkout requests for the built-in sandbox's catalogue and test cards.

One definition shared by the demo, the tests, the crash workers and the benchmarks, so a change
to the catalogue is made once. Values follow Violet's sandbox (see docs/sandbox.md).
"""

from __future__ import annotations

import copy
from typing import Any, Final

ADDRESS: Final[dict[str, Any]] = {
    "address_1": "1 Main St",
    "city": "Brooklyn",
    "state": "NY",
    "postal_code": "11211",
    "country": "US",
    "phone": "5555550100",
}
CUSTOMER: Final[dict[str, Any]] = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.com",
}

VISA: Final[dict[str, Any]] = {
    "type": "card",
    "card_number": "4242424242424242",
    "card_cvc": "123",
    "card_exp_month": 12,
    "card_exp_year": 2030,
    "card_postal_code": "11211",
}
DECLINED: Final = {**VISA, "card_number": "4000000000000002", "card_cvc": "987"}
THREE_DS: Final = {**VISA, "card_number": "4000002760003184", "card_cvc": "314"}
TOKEN: Final[dict[str, Any]] = {"type": "token", "token": "tok_visa", "provider": "STRIPE"}
INTENT: Final[dict[str, Any]] = {"type": "intent"}

PHYSICAL: Final = [{"sku_id": 196777, "quantity": 2}]
DIGITAL: Final = [{"sku_id": 300001, "quantity": 1}]
TWO_MERCHANTS: Final = [{"sku_id": 196777, "quantity": 1}, {"sku_id": 196592, "quantity": 1}]
ONE_REJECTED: Final = [{"sku_id": 196777, "quantity": 1}, {"sku_id": 400001, "quantity": 1}]


def example_request(
    app_order_id: str,
    skus: list[dict[str, Any]] | None = None,
    payment: dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A valid request: physical goods shipped to Brooklyn, paid with the Visa test card."""
    request: dict[str, Any] = {
        "app_order_id": app_order_id,
        "currency": "USD",
        "skus": skus if skus is not None else PHYSICAL,
        "customer": CUSTOMER,
        "shipping_address": ADDRESS,
        "billing_address": None,
        "shipping": {"policy": "cheapest"},
        "payment": payment if payment is not None else VISA,
    }
    request.update(overrides)
    return copy.deepcopy(request)  # callers edit their copy; the constants stay as they are
