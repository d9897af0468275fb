"""The Prometheus endpoint scraped over real HTTP while real checkouts run against the sandbox:
the database's gauges and this process's counters move with what happened."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator import observe
from orchestrator.api import Orchestrator
from orchestrator.errors import ConfigError
from orchestrator.metrics.serve import serving_metrics
from orchestrator.sandbox import SandboxControl
from orchestrator.store.budgets import MerchantBudgets, merchant_key
from orchestrator.webhooks.receive import WebhookReceiver
from tests.fixtures.orchestrator import DECLINED, DIGITAL, INTENT, TOKEN, checkout_request
from tests.fixtures.webhooks import SECRET, delivery

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, keyed by its name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def metrics_url(orch: Orchestrator) -> AsyncIterator[str]:
    async with serving_metrics(orch.engine, "127.0.0.1", 0) as port:
        yield f"http://127.0.0.1:{port}/metrics"


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient() as client:
        answer = await client.get(url)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


async def test_a_failed_checkout_moves_the_failed_count_and_the_call_counters(
    orch: Orchestrator, metrics_url: str
) -> None:
    before = await scrape(metrics_url)
    assert value(before, "orchestrator_database_up") == 1
    assert value(before, "orchestrator_checkouts", state="failed") == 0

    declined = await orch.start(checkout_request(payment=DECLINED))
    assert declined.state == "failed"

    after = await scrape(metrics_url)
    assert value(after, "orchestrator_checkouts", state="failed") == 1
    assert value(after, "orchestrator_checkouts_estimated", state="failed") == 0
    created = ("orchestrator_violet_calls_total", "/checkout/cart", "POST", "200")
    name, endpoint, method, status = created
    grew = value(after, name, endpoint=endpoint, method=method, status=status) - value(
        before, name, endpoint=endpoint, method=method, status=status
    )
    assert grew == 1
    # Calls on a cart are named by the path template, never by the cart's id.
    endpoints = {dict(labels)["endpoint"] for (n, labels) in after if n == name}
    assert "/checkout/cart/{id}/customer" in endpoints
    assert not any(ch.isdigit() for e in endpoints for ch in e), endpoints
    count = "orchestrator_violet_call_seconds_count"
    assert value(after, count, endpoint="/checkout/cart", method="POST") > value(
        before, count, endpoint="/checkout/cart", method="POST"
    )


async def test_open_checkouts_waiting_and_due_show_in_the_gauges(
    orch: Orchestrator, metrics_url: str, sandbox_control: SandboxControl
) -> None:
    waiting = await orch.start(checkout_request(skus=DIGITAL, payment=INTENT))
    await sandbox_control.add_fault("create_cart", "rate_limit", retry_after="120")
    scheduled = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
    await sandbox_control.clear_faults()
    assert scheduled.next_attempt_at is not None

    found = await scrape(metrics_url)
    assert value(found, "orchestrator_checkouts", state=waiting.state) >= 1
    assert value(found, "orchestrator_checkouts_waiting_for_input") == 1
    assert value(found, "orchestrator_oldest_open_checkout_age_seconds") > 0
    assert value(found, "orchestrator_violet_throttle_active_pauses") >= 1
    assert value(found, "orchestrator_violet_throttle_remaining_seconds") > 60
    calls = "orchestrator_violet_calls_total"
    assert value(found, calls, endpoint="/checkout/cart", method="POST", status="429") >= 1


async def test_a_reconcile_counts_its_verdict(orch: Orchestrator, metrics_url: str) -> None:
    """A checkout left in flight (its worker gone) is reconciled by the next drive."""
    before = await scrape(metrics_url)
    checkout = await orch.start(checkout_request(payment=TOKEN), run=False)
    async with orch.engine.begin() as conn:
        await conn.exec_driver_sql(
            "UPDATE checkouts SET in_flight = true, pending_step = 'create_cart', "
            "step_started_at = now() - interval '1 hour' WHERE id = %(id)s",
            {"id": checkout.id},
        )
    during = await scrape(metrics_url)
    assert value(during, "orchestrator_steps_unknown_outcome") == 1
    await orch.run(checkout.id)
    after = await scrape(metrics_url)
    verdicts = "orchestrator_reconcile_verdicts_total"
    grew = sum(
        v - before.get(k, 0.0) for k, v in after.items() if k[0] == verdicts and v != before.get(k)
    )
    assert grew >= 1
    assert value(after, "orchestrator_steps_unknown_outcome") == 0


async def test_an_unreadable_database_is_a_gauge_not_a_failed_scrape(
    orch: Orchestrator, metrics_url: str
) -> None:
    async with orch.engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE violet_throttle RENAME TO violet_throttle_gone")
    try:
        found = await scrape(metrics_url)
    finally:
        async with orch.engine.begin() as conn:
            await conn.exec_driver_sql("ALTER TABLE violet_throttle_gone RENAME TO violet_throttle")
    assert value(found, "orchestrator_database_up") == 0
    assert ("orchestrator_checkouts_due", ()) not in found


async def test_a_port_in_use_is_refused_by_name(orch: Orchestrator, metrics_url: str) -> None:
    port = int(metrics_url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(ConfigError, match=rf"--metrics-port: cannot listen on 127\.0\.0\.1:{port}"):
        async with serving_metrics(orch.engine, "127.0.0.1", port):
            pass


def test_endpoints_are_path_templates() -> None:
    assert observe.endpoint_of("/checkout/cart/123/payment") == "/checkout/cart/{id}/payment"
    assert observe.endpoint_of("/orders/77/bags/8/cancel") == "/orders/{id}/bags/{id}/cancel"
    assert observe.endpoint_of("/checkout/cart") == "/checkout/cart"
    assert observe.endpoint_of("/login") == "/login"


async def test_a_takeover_is_counted(orch: Orchestrator, metrics_url: str) -> None:
    """A lease left behind by a dead worker, expired, then claimed by recovery."""
    checkout = await orch.start(checkout_request(payment=TOKEN), run=False)
    async with orch.engine.begin() as conn:
        await conn.exec_driver_sql(
            "UPDATE checkouts SET lease_owner = 'dead-worker', "
            "lease_expires_at = now() - interval '1 minute', next_attempt_at = now() "
            "WHERE id = %(id)s",
            {"id": checkout.id},
        )
    before = await scrape(metrics_url)
    claims = await orch.repo.claim_due(worker="w", limit=10, lease_seconds=5)
    assert [c.previous_owner for c in claims] == ["dead-worker"]
    after = await scrape(metrics_url)
    name = "orchestrator_lease_takeovers_total"
    assert value(after, name, of="checkout") - value(before, name, of="checkout") == 1


async def test_webhook_answers_are_counted_by_outcome(
    orch: Orchestrator, metrics_url: str, database_url: str
) -> None:
    receiver = WebhookReceiver(secrets=[SECRET], database_url=database_url)
    before = await scrape(metrics_url)
    try:
        transport = httpx.ASGITransport(app=receiver)
        async with httpx.AsyncClient(transport=transport, base_url="http://hooks") as http:
            for raw, headers in (delivery(), delivery(secret=None), delivery(secret=None)):
                await http.post("/violet/webhooks", content=raw, headers=headers)
    finally:
        await receiver.close()
    after = await scrape(metrics_url)
    name = "orchestrator_webhook_answers_total"
    grew = {
        outcome: value(after, name, outcome=outcome) - value(before, name, outcome=outcome)
        for outcome in ("stored", "unsigned")
    }
    assert grew == {"stored": 1, "unsigned": 2}
    assert value(after, "orchestrator_webhook_inbox_pending") >= 1


async def test_a_merchants_429s_show_in_its_budget(orch: Orchestrator, metrics_url: str) -> None:
    budgets = MerchantBudgets(orch.repo)
    await budgets.take([merchant_key(10001)], max_wait=1.0)
    await budgets.rate_limited([merchant_key(10001)], 60.0)

    samples = await scrape(metrics_url)

    key = merchant_key(10001)
    assert value(samples, "orchestrator_violet_budget_rate_limited_total", key=key) == 1
    assert value(samples, "orchestrator_violet_budget_calls_total", key=key) == 1
    assert (("orchestrator_violet_budget_open", (("key", key),)) in samples) is True
    assert value(samples, "orchestrator_violet_budget_open", key=key) == 0
    assert value(samples, "orchestrator_violet_budget_rate_per_second", key=key) > 0
