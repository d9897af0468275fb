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
