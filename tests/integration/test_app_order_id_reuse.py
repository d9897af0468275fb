"""One app_order_id, one request: starting the same request again returns the existing checkout
(idempotent); a different request under a used app_order_id is a conflict that names the id and
changes nothing. Requests are compared in their persisted, card-free form."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import CheckoutConflict, OrchestratorError
from orchestrator.api import Orchestrator
from orchestrator.sandbox import SandboxControl
from tests.fixtures.orchestrator import ADDRESS, TOKEN, VISA, checkout_request

DIFFERENT: list[tuple[str, dict[str, Any]]] = [
    ("skus", {"skus": [{"sku_id": 196777, "quantity": 3}]}),
    ("customer", {"customer": {"first_name": "Eve", "last_name": "Lovelace", "email": "e@x.io"}}),
    ("shipping_address", {"shipping_address": {**ADDRESS, "address_1": "2 Main St"}}),
    ("payment", {"payment": TOKEN}),
    ("payment", {"payment": {**VISA, "card_number": "5555555555554444"}}),
    ("currency", {"currency": "EUR"}),
    ("shipping", {"shipping": {"policy": "first"}}),
]


@pytest.mark.parametrize(("field", "change"), DIFFERENT, ids=[f for f, _ in DIFFERENT])
async def test_a_different_request_under_a_used_app_order_id_is_a_conflict(
    orch: Orchestrator, sandbox_control: SandboxControl, field: str, change: dict[str, Any]
) -> None:
    first_request = checkout_request()
    first = await orch.start(first_request)
    assert first.state == "submitted"
    events_before = await orch.history(first.id)
    calls_before = len(await sandbox_control.calls())
    second_request = {**first_request, **change}
    with pytest.raises(CheckoutConflict) as info:
        await orch.start(second_request)
    assert isinstance(info.value, OrchestratorError)
    assert first_request["app_order_id"] in str(info.value)
    assert info.value.app_order_id == first_request["app_order_id"]
    assert info.value.checkout_id == first.id
    assert info.value.fields == [field]
    assert "5555555555554444" not in str(info.value)
    assert await orch.history(first.id) == events_before  # nothing written
    assert len(await sandbox_control.calls()) == calls_before  # nothing sent
    with pytest.raises(CheckoutConflict):
        await orch.start(second_request, run=False)


async def test_the_same_request_again_returns_the_existing_checkout(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    request = checkout_request()
    first = await orch.start(request)
    # The same request, written differently: defaults spelled out, padding trimmed; a card is
    # the same card when its last four digits are (the rest is never stored).
    again = {
        **request,
        "customer": {**request["customer"], "first_name": " Ada "},
        "payment": {**VISA, "card_cvc": "999", "card_exp_year": 2031},
    }
    again.pop("billing_address")
    second = await orch.start(again)
    assert second.id == first.id and second.state == "submitted"
    assert (await sandbox_control.stats())["carts_created"] == 1


async def test_an_app_order_id_shaped_like_a_uuid_is_found_again(orch: Orchestrator) -> None:
    request = checkout_request(app_order_id="9f1c3a52-7d0e-4a8b-b0c4-2f6e8d1a7c35")
    first = await orch.start(request, run=False)
    second = await orch.start(request, run=False)
    assert second.id == first.id
    with pytest.raises(CheckoutConflict):
        await orch.start({**request, "currency": "EUR"}, run=False)
