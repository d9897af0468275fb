"""Checkouts driven end to end through the persisted machine, against the in-process sandbox."""

from __future__ import annotations

from orchestrator.api import Orchestrator
from orchestrator.sandbox import SandboxControl
from tests.fixtures.orchestrator import (
    DIGITAL,
    TOKEN,
    TWO_MERCHANTS,
    checkout_request,
)


async def _states(orch: Orchestrator, ref: str) -> list[str]:
    return [e.to_state for e in await orch.history(ref) if e.kind == "transition"]


async def test_physical_card_checkout_passes_shipping_and_is_submitted(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    checkout = await orch.start(checkout_request())
    assert checkout.state == "submitted", checkout.last_error
    assert checkout.violet_order_id is not None
    assert checkout.total is not None and checkout.total > 0
    assert [b["status"] for b in checkout.bags] == ["ACCEPTED"]
    assert await _states(orch, checkout.app_order_id) == [
        "created",
        "customer_applied",
        "shipping_applied",
        "paid",
        "priced",
        "submitted",
    ]
    stats = await sandbox_control.stats()
    assert stats["submits"] == {str(checkout.violet_order_id): 1}


async def test_digital_token_checkout_skips_shipping(orch: Orchestrator) -> None:
    checkout = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
    assert checkout.state == "submitted", checkout.last_error
    assert "shipping_applied" not in await _states(orch, str(checkout.id))


async def test_multi_merchant_checkout_records_each_bag(orch: Orchestrator) -> None:
    checkout = await orch.start(checkout_request(skus=TWO_MERCHANTS, payment=TOKEN))
    assert checkout.state == "submitted", checkout.last_error
    assert len(checkout.bags) == 2
    assert {b["status"] for b in checkout.bags} == {"ACCEPTED"}


async def test_starting_the_same_app_order_id_twice_creates_one_cart(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    request = checkout_request(payment=TOKEN)
    first = await orch.start(request)
    again = await orch.start(request)
    assert again.id == first.id
    stats = await sandbox_control.stats()
    assert stats["carts_by_app_order_id"][request["app_order_id"]] == [first.violet_order_id]


async def test_audit_trail_is_complete_and_ordered(orch: Orchestrator) -> None:
    checkout = await orch.start(checkout_request(payment=TOKEN))
    events = await orch.history(checkout.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].kind == "created"
    calls = [e for e in events if e.kind == "violet_call" and e.step not in ("login", "refresh")]
    assert [c.step for c in calls] == [
        "create_cart",
        "customer",
        "shipping_available",
        "set_shipping",
        "payment",
        "price",
        "submit",
    ]
    assert all(c.http_status == 200 for c in calls)
    assert all(c.latency_ms is not None for c in calls)
    started = [e.step for e in events if e.kind == "step_started"]
    assert started == [
        "create_cart",
        "apply_customer",
        "apply_shipping",
        "apply_payment",
        "price",
        "submit",
    ]
