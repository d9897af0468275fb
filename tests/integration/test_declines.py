"""Every decline is recorded as `card_declined`, wherever Violet's answer carries it (the error
body's own type, or a `decline_code` inside `errors[]`, at payment or at submit), so the
`--error-type card_declined` listing and the audit docs' SQL find it; Violet's own type and the
decline reason stay in the stored error."""

from __future__ import annotations

import psycopg
import pytest

from orchestrator import audit
from orchestrator.api import Orchestrator
from orchestrator.sandbox import SandboxControl
from tests.fixtures.db import libpq_url
from tests.fixtures.orchestrator import DECLINED, VISA, checkout_request

INSUFFICIENT_FUNDS = {**VISA, "card_number": "4000000000009995"}

#: docs/audit.md, "Ad-hoc SQL": declines per day.
DECLINES_PER_DAY = """
SELECT date_trunc('day', created_at) AS day, count(*)
FROM checkouts
WHERE last_error IS NOT NULL AND last_error->>'type' = 'card_declined'
GROUP BY 1 ORDER BY 1 DESC
"""


async def _declines_per_day(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url)) as conn:
        rows = await (await conn.execute(DECLINES_PER_DAY)).fetchall()
    return sum(int(count) for _, count in rows)


@pytest.mark.parametrize(
    ("shape", "step", "violet_type"),
    [
        ("error", "submit", "card_declined"),
        ("errors_entry", "submit", "EXTERNAL_SUBMIT_CART"),
        ("cart_errors", "submit", "EXTERNAL_SUBMIT_CART"),
        ("error", "payment", "card_declined"),
        ("errors_entry", "payment", "EXTERNAL_SET_PAYMENT_METHOD"),
        ("cart_errors", "payment", "EXTERNAL_SET_PAYMENT_METHOD"),
    ],
)
async def test_a_decline_is_recorded_as_card_declined_wherever_violet_puts_it(
    orch: Orchestrator,
    sandbox_control: SandboxControl,
    database_url: str,
    shape: str,
    step: str,
    violet_type: str,
) -> None:
    await sandbox_control.configure(decline_shape=shape, decline_step=step)
    checkout = await orch.start(checkout_request(payment=DECLINED))
    assert checkout.state == "failed"
    error = checkout.last_error
    assert error is not None
    assert error["step"] == ("submit" if step == "submit" else "apply_payment")
    assert error["type"] == "card_declined"
    assert (error["violet_type"], error["decline_code"]) == (violet_type, "card_declined")
    errors = [e for e in await orch.history(checkout.id) if e.kind == "error"]
    assert errors and errors[-1].error_type == "card_declined"
    found = await audit.list_checkouts(orch.engine, error_type="card_declined")
    assert [c.id for c in found] == [checkout.id]
    assert await _declines_per_day(database_url) == 1
    assert (await sandbox_control.stats())["submits"] == {}


async def test_a_decline_keeps_its_reason_beside_the_card_declined_type(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.configure(decline_shape="errors_entry")
    checkout = await orch.start(checkout_request(payment=INSUFFICIENT_FUNDS))
    assert checkout.last_error is not None
    assert checkout.last_error["type"] == "card_declined"
    assert checkout.last_error["decline_code"] == "insufficient_funds"
    assert checkout.last_error["violet_type"] == "EXTERNAL_SUBMIT_CART"


async def test_a_card_declined_when_applied_can_be_replaced_at_the_sandbox(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    """The sandbox keeps a 200 decline in the cart's errors[] only until a new payment."""
    await sandbox_control.configure(decline_shape="cart_errors", decline_step="payment")
    declined = await orch.start(checkout_request(payment=DECLINED))
    assert declined.violet_order_id is not None
    cart = await sandbox_control.cart(declined.violet_order_id)
    assert cart["payment"] is None and [e["type"] for e in cart["errors"]] == [
        "EXTERNAL_SET_PAYMENT_METHOD"
    ]
    accepted = await orch.start(checkout_request())
    assert accepted.state == "submitted", accepted.last_error
