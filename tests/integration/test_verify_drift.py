"""`verify` against the in-process sandbox: agreement is zero drift, each kind of drift is found."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from orchestrator.api import Orchestrator
from orchestrator.sandbox import SandboxControl
from orchestrator.verify import verify
from tests.fixtures.orchestrator import (
    DECLINED,
    DIGITAL,
    INTENT,
    TOKEN,
    TWO_MERCHANTS,
    checkout_request,
)
from tests.fixtures.sandbox import RawViolet


async def test_every_kind_of_finished_or_waiting_checkout_agrees_with_violet(
    orch: Orchestrator,
) -> None:
    submitted = await orch.start(checkout_request(skus=TWO_MERCHANTS, payment=TOKEN))
    declined = await orch.start(checkout_request(payment=DECLINED))
    waiting = await orch.start(checkout_request(skus=DIGITAL, payment=INTENT))
    canceled = await orch.start(checkout_request(skus=DIGITAL, payment=INTENT))
    await orch.cancel(canceled.id)
    assert (submitted.state, declined.state, waiting.state) == (
        "submitted",
        "failed",
        "awaiting_confirmation",
    )
    report = await verify(orch.worker, check_duplicates=True)
    assert report.checked == 4
    assert report.drift == 0, report.to_json()
    assert report.ok and report.duplicate_carts == {} and report.duplicate_orders == {}


async def test_a_cart_submitted_behind_our_back_is_state_drift(
    orch: Orchestrator, sandbox_control: SandboxControl, sandbox_violet: RawViolet
) -> None:
    checkout = await orch.start(checkout_request(skus=DIGITAL, payment=INTENT))
    assert checkout.violet_order_id is not None
    await sandbox_control.confirm_payment(checkout.violet_order_id)
    response = await sandbox_violet.post(
        f"/checkout/cart/{checkout.violet_order_id}/submit", json={}
    )
    assert response.status_code == 200, response.text
    report = await verify(orch.worker)
    assert report.drift == 1
    (drift,) = report.disagreements
    assert (drift.field, drift.local, drift.app_order_id) == (
        "state",
        "awaiting_confirmation",
        checkout.app_order_id,
    )
    assert drift.violet != "IN_PROGRESS"


async def test_wrong_local_totals_and_bag_status_are_drift(orch: Orchestrator) -> None:
    checkout = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
    assert checkout.total is not None
    bags = [{**checkout.bags[0], "status": "REJECTED"}]
    async with orch.engine.begin() as conn:
        # A finished checkout is frozen by a trigger: only a superuser with triggers off can.
        await conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        await conn.exec_driver_sql(
            "UPDATE checkouts SET total = total + 1, bags = %(bags)s::jsonb WHERE id = %(id)s",
            {"id": checkout.id, "bags": json.dumps(bags)},
        )
    report = await verify(orch.worker)
    assert report.drift == 1  # one checkout, two fields
    fields = {d.field: (d.local, d.violet) for d in report.disagreements}
    assert fields["total"] == (checkout.total + 1, checkout.total)
    bag_field = f"bags[{checkout.bags[0]['bag_id']}].status"
    assert fields[bag_field] == ("REJECTED", "ACCEPTED")


async def test_a_second_cart_and_a_second_order_for_one_app_order_id_are_counted(
    orch: Orchestrator, sandbox_violet: RawViolet
) -> None:
    checkout = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
    body = {
        "base_currency": "USD",
        "app_order_id": checkout.app_order_id,
        "skus": [{"sku_id": DIGITAL[0]["sku_id"], "quantity": 1}],
    }
    response = await sandbox_violet.post("/checkout/cart", json=body)
    assert response.status_code == 200, response.text
    second = response.json()["id"]
    report = await verify(orch.worker, check_duplicates=True)
    assert report.duplicate_carts == {
        checkout.app_order_id: sorted([checkout.violet_order_id, second])
    }
    assert report.duplicate_orders == {} and report.drift == 0
    not_checked = await verify(orch.worker)
    assert "duplicate_carts" not in not_checked.to_json()

    payment = {"token": "tok_visa", "payment_provider": "STRIPE"}
    for path, payload in (
        ("customer", {"email": "a@example.com", "first_name": "A", "last_name": "B"}),
        ("payment", payment),
    ):
        response = await sandbox_violet.post(f"/checkout/cart/{second}/{path}", json=payload)
        assert response.status_code == 200, response.text
    response = await sandbox_violet.post(f"/checkout/cart/{second}/submit", json={})
    assert response.status_code == 200, response.text
    report = await verify(orch.worker, check_duplicates=True)
    assert list(report.duplicate_orders) == [checkout.app_order_id]
    assert report.drift == 1 and not report.ok


async def test_since_and_sample_limit_what_is_checked(orch: Orchestrator) -> None:
    for _ in range(3):
        await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
    assert (await verify(orch.worker, sample=2)).checked == 2
    assert (await verify(orch.worker, since=datetime.now(UTC))).checked == 0
    assert (await verify(orch.worker)).checked == 3
    assert (await verify(orch.worker)).to_json()["drift"] == 0
