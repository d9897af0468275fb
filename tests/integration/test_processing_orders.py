"""An order Violet took but has not settled yet (order PROCESSING, bags SUBMITTED) is an outcome
not yet known: it is read again, never judged as rejected, and recorded as Violet settles it."""

from __future__ import annotations

import asyncio
import json

import httpx

from orchestrator.api import Orchestrator
from orchestrator.config import Settings
from orchestrator.sandbox import SandboxControl
from orchestrator.verify import verify
from tests.fixtures.orchestrator import TOKEN, TWO_MERCHANTS, checkout_request, make_settings
from tests.fixtures.sandbox import RawViolet, prepare_cart

REJECTED_ONLY = [{"sku_id": 400001, "quantity": 1}]  # Flaky Goods: its merchant rejects it


async def test_the_sandbox_answers_a_submit_while_the_order_is_still_processing(
    sandbox_violet: RawViolet, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.configure(processing_ms=200)
    cart = await prepare_cart(sandbox_violet, [196777, 400001])
    answer = (await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})).json()
    assert answer["status"] == "PROCESSING"
    assert {(b["status"], b["financial_status"]) for b in answer["bags"]} == {
        ("SUBMITTED", "AUTHORIZED")
    }
    again = (await sandbox_violet.post(f"/checkout/cart/{cart['id']}/submit", json={})).json()
    assert again["status"] == "PROCESSING"  # a repeat takes nothing new
    await asyncio.sleep(0.3)
    settled = (await sandbox_violet.get(f"/checkout/cart/{cart['id']}")).json()
    assert settled["status"] == "COMPLETED"
    assert sorted(b["status"] for b in settled["bags"]) == ["ACCEPTED", "REJECTED"]
    stats = await sandbox_control.stats()
    assert stats["submits"] == {str(cart["id"]): 1}
    assert stats["duplicate_submits"] == {str(cart["id"]): 1}


async def test_a_submit_answered_while_processing_ends_submitted_with_its_bags_accepted(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.configure(processing_ms=300)
    checkout = await orch.start(checkout_request(skus=TWO_MERCHANTS, payment=TOKEN))
    assert checkout.state == "submitted", checkout.last_error
    assert checkout.violet_status == "COMPLETED"
    assert [b["status"] for b in checkout.bags] == ["ACCEPTED", "ACCEPTED"]
    assert checkout.last_error is None
    kinds = [e.kind for e in await orch.history(checkout.id)]
    assert "outcome_pending" in kinds  # the submit's answer said PROCESSING: it was read again
    stats = await sandbox_control.stats()
    assert stats["calls_by_op"]["submit"] == 1 and stats["duplicate_submits"] == {}
    report = await verify(orch.worker)
    assert report.ok, report.to_json()


async def test_a_submit_reconciled_while_processing_ends_submitted_with_its_bags_accepted(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    """The submit's answer is lost; the read that settles it finds the order PROCESSING."""
    await sandbox_control.configure(processing_ms=1500)
    await sandbox_control.add_fault("submit", "drop_after_apply", count=1)
    first = await orch.start(checkout_request(skus=TWO_MERCHANTS, payment=TOKEN))
    assert (first.state, first.pending_step, first.in_flight) == ("priced", "submit", True)
    done = await orch.run(first.id, retry_wait=5)
    assert done.state == "submitted", done.last_error
    assert [b["status"] for b in done.bags] == ["ACCEPTED", "ACCEPTED"]
    events = await orch.history(done.id)
    reconciled = [e for e in events if e.kind == "reconciled"]
    assert reconciled and reconciled[0].detail is not None
    assert reconciled[0].detail["decision"] == "pending"  # it read PROCESSING, and waited
    stats = await sandbox_control.stats()
    assert stats["calls_by_op"]["submit"] == 1 and stats["duplicate_submits"] == {}
    report = await verify(orch.worker)
    assert report.ok, report.to_json()


async def test_a_processing_order_whose_bags_end_rejected_fails_as_rejected(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.configure(processing_ms=300)
    checkout = await orch.start(checkout_request(skus=REJECTED_ONLY, payment=TOKEN))
    assert checkout.state == "failed"
    assert checkout.last_error is not None
    assert checkout.last_error["message"] == "every bag was rejected"
    assert checkout.last_error["type"] == "EXTERNAL_SUBMIT_CART"
    assert [b["status"] for b in checkout.bags] == ["REJECTED"]
    report = await verify(orch.worker)
    assert report.ok, report.to_json()


async def test_a_processing_order_partly_rejected_ends_submitted_per_bag(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.configure(processing_ms=300)
    request = checkout_request(
        skus=[{"sku_id": 196777, "quantity": 1}, *REJECTED_ONLY], payment=TOKEN
    )
    checkout = await orch.start(request)
    assert checkout.state == "submitted" and checkout.partially_accepted
    assert sorted(b["status"] for b in checkout.bags) == ["ACCEPTED", "REJECTED"]


async def test_an_order_still_processing_when_the_reads_run_out_is_recorded_submitted(
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> None:
    """The order exists at Violet once the submit was answered: never failed, never left in
    flight; its bags are recorded as last seen, and verify agrees once Violet accepts them."""
    settings: Settings = make_settings(database_url, "http://sandbox/v1", submit_outcome_wait=0.3)
    await sandbox_control.configure(processing_ms=1200)
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        checkout = await orch.start(checkout_request(skus=TWO_MERCHANTS, payment=TOKEN))
        assert checkout.state == "submitted", checkout.last_error
        assert (checkout.pending_step, checkout.in_flight) == (None, False)
        assert checkout.violet_status == "PROCESSING"
        assert [b["status"] for b in checkout.bags] == ["SUBMITTED", "SUBMITTED"]
        transition = next(e for e in await orch.history(checkout.id) if e.to_state == "submitted")
        assert transition.detail is not None and transition.detail["outcome_pending"] is True
        assert (await verify(orch.worker)).ok
        await asyncio.sleep(1.2)  # Violet's merchants accept the bags meanwhile
        assert (await sandbox_control.cart(checkout.violet_order_id))["status"] == "COMPLETED"
        report = await verify(orch.worker)
        assert report.ok, report.to_json()


async def test_a_read_failing_while_the_order_is_processing_keeps_the_submit_in_flight(
    orch: Orchestrator, sandbox_control: SandboxControl
) -> None:
    """Violet answered the submit; the reads that follow cannot reach it. The step stays in
    flight (never submitted again, never failed) and a later drive settles it."""
    await sandbox_control.configure(processing_ms=300)
    await sandbox_control.add_fault("get_cart", "drop_before_apply", count=20)
    first = await orch.start(checkout_request(skus=TWO_MERCHANTS, payment=TOKEN))
    assert (first.state, first.pending_step, first.in_flight) == ("priced", "submit", True)
    assert first.violet_status == "PROCESSING"
    await sandbox_control.clear_faults()
    done = await orch.run(first.id, retry_wait=5)
    assert done.state == "submitted", done.last_error
    assert [b["status"] for b in done.bags] == ["ACCEPTED", "ACCEPTED"]
    stats = await sandbox_control.stats()
    assert stats["calls_by_op"]["submit"] == 1 and stats["duplicate_submits"] == {}


class _StaleCartReads(httpx.AsyncBaseTransport):
    """Violet in front of the sandbox, whose next `reads` cart reads after the submit show the
    cart unsubmitted (status and bags IN_PROGRESS), with an error on every bag if `refused`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, reads: int, refused: bool) -> None:
        self.inner = inner
        self.reads = reads
        self.refused = refused
        self.submitted = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        path = request.url.path
        if request.method == "POST" and path.endswith("/submit"):
            self.submitted = True
        if not (request.method == "GET" and "/checkout/cart/" in path and self.submitted):
            return response
        if self.reads <= 0:
            return response
        self.reads -= 1
        await response.aread()
        cart = json.loads(response.content)
        cart["status"] = "IN_PROGRESS"
        for bag in cart["bags"]:
            bag["status"] = "IN_PROGRESS"
        if self.refused:
            cart["errors"] = [
                {
                    "order_id": cart["id"],
                    "bag_id": bag["id"],
                    "type": "EXTERNAL_SUBMIT_CART",
                    "message": "the merchant platform rejected the order",
                    "entity_type": "BAG",
                }
                for bag in cart["bags"]
            ]
        return httpx.Response(
            response.status_code,
            headers={"content-type": "application/json"},
            content=json.dumps(cart).encode(),
        )


def _short_windows(database_url: str) -> Settings:
    """A settle window of 2 x 0.5 + 0.3 s, and reads of an unsettled submit for 5 s."""
    return make_settings(
        database_url,
        "http://sandbox/v1",
        read_timeout=0.5,
        total_timeout=0.5,
        submit_settle_seconds=0.3,
        submit_outcome_wait=5.0,
    )


async def test_a_submit_violet_answered_is_never_redone_when_a_later_read_looks_unsubmitted(
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> None:
    await sandbox_control.configure(processing_ms=200)
    violet = _StaleCartReads(sandbox_transport, reads=3, refused=False)
    async with Orchestrator(_short_windows(database_url), violet_transport=violet) as orch:
        first = await orch.start(checkout_request(skus=TWO_MERCHANTS, payment=TOKEN))
        done = await orch.run(first.id, retry_wait=10)
    assert done.state == "submitted", done.last_error
    stats = await sandbox_control.stats()
    assert stats["calls_by_op"]["submit"] == 1 and stats["duplicate_submits"] == {}


async def test_a_submit_violet_answered_then_shown_refused_on_every_bag_fails(
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> None:
    await sandbox_control.configure(processing_ms=200)
    violet = _StaleCartReads(sandbox_transport, reads=100, refused=True)
    async with Orchestrator(_short_windows(database_url), violet_transport=violet) as orch:
        first = await orch.start(checkout_request(skus=TWO_MERCHANTS, payment=TOKEN))
        done = await orch.run(first.id, retry_wait=10)
    assert done.state == "failed"
    assert done.last_error is not None and done.last_error["type"] == "EXTERNAL_SUBMIT_CART"
    stats = await sandbox_control.stats()
    assert stats["calls_by_op"]["submit"] == 1 and stats["duplicate_submits"] == {}
