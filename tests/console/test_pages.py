"""The console's read-only pages over HTTP, against checkouts made through the sandbox: what an
operator looks for (why did it fail, what did Violet answer, where is it now) is on the page."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from orchestrator.console.pages import PAGE_SIZE
from tests.console.conftest import Shop
from tests.fixtures.db import run_sql
from tests.fixtures.orchestrator import DIGITAL, TOKEN, checkout_request


def _app_order_ids(page: str) -> list[str]:
    """The app_order_ids a list page links to, in order."""
    return re.findall(r'<a href="/checkouts/[0-9a-f-]{36}">([^<]+)</a>', page)


async def test_the_overview_shows_counts_pauses_the_oldest_and_a_plot_of_failures(
    local: httpx.AsyncClient, shop: Shop
) -> None:
    page = await local.get("/")
    assert page.status_code == 200
    text = page.text
    assert re.search(r'state-failed">failed</span></a></td>\s*<td class="num">2<', text)
    assert re.search(r'state-submitted">submitted</span></a></td>\s*<td class="num">1<', text)
    assert "<b>1</b> waiting for input" in text
    # The rate-limited start closed the shared Violet budget: every worker is paused.
    assert re.search(r"<td>global</td><td>[^<]+</td>\s*<td><b>pausing every worker</b>", text)
    oldest = re.search(r"oldest unfinished: <a href=\"/checkouts/([0-9a-f-]{36})\"", text)
    assert oldest is not None and oldest.group(1) == str(shop.waiting.id)
    chart = text[text.index('<svg class="chart"') : text.index("</svg>")]
    assert chart.count("<rect") == 2  # one bar (this hour), one piece per error type
    assert "1 x card_declined" in chart and "1 x retries_exhausted" in chart
    assert "error_type=card_declined" in text and "error_type=retries_exhausted" in text
    week = await local.get("/?window=7d")
    assert week.status_code == 200 and "<b>7d</b>" in week.text


async def test_the_list_is_newest_first_and_filters(local: httpx.AsyncClient, shop: Shop) -> None:
    everything = _app_order_ids((await local.get("/checkouts")).text)
    made = [shop.submitted, shop.declined, shop.exhausted, shop.waiting, shop.canceled]
    made.append(shop.scheduled)
    assert everything == [c.app_order_id for c in reversed(made)]

    async def listed(query: str) -> set[str]:
        page = await local.get(f"/checkouts?{query}")
        assert page.status_code == 200, page.text
        return set(_app_order_ids(page.text))

    assert await listed("state=failed") == {shop.declined.app_order_id, shop.exhausted.app_order_id}
    assert await listed("error_type=card_declined") == {shop.declined.app_order_id}
    assert await listed("state=failed&error_type=retries_exhausted") == {
        shop.exhausted.app_order_id
    }
    assert await listed("waiting=1") == {shop.waiting.app_order_id}
    assert await listed("unfinished=1") == {shop.waiting.app_order_id, shop.scheduled.app_order_id}
    assert await listed("since=2099-01-01T00:00") == set()
    assert await listed("until=2000-01-01T00:00Z") == set()
    assert len(await listed("since=1h")) == 6
    digital_merchant = shop.exhausted.bags[0]["merchant_id"]
    assert await listed(f"merchant={digital_merchant}") == {
        shop.exhausted.app_order_id,
        shop.waiting.app_order_id,
    }
    assert await listed("stuck=1") == set()


@pytest.mark.parametrize(
    ("query", "field"),
    [("state=bogus", "state"), ("merchant=ten", "merchant"), ("since=yesterday", "since")],
)
async def test_a_bad_filter_is_refused_naming_the_field(
    local: httpx.AsyncClient, shop: Shop, query: str, field: str
) -> None:
    page = await local.get(f"/checkouts?{query}")
    assert page.status_code == 400
    assert f'<p class="notice bad">{field}: ' in page.text


async def test_stuck_in_flight_lists_a_step_whose_worker_is_gone(
    local: httpx.AsyncClient, shop: Shop
) -> None:
    """A dead worker's checkout (in flight, its lease expired) is stuck until recovery takes it;
    a step in flight under a live lease and younger than its settle window is not."""
    row = await shop.orch.start(checkout_request(skus=DIGITAL, payment=TOKEN), run=False)
    await run_sql(
        shop.settings.database_url or "",
        "UPDATE checkouts SET in_flight = true, pending_step = 'create_cart', "
        "step_started_at = now(), step_send_by = now() + interval '10 seconds', "
        "lease_owner = 'dead-worker', lease_expires_at = now() + interval '1 minute' "
        "WHERE id = %(id)s",
        {"id": row.id},
    )
    assert _app_order_ids((await local.get("/checkouts?stuck=1")).text) == []
    await run_sql(
        shop.settings.database_url or "",
        "UPDATE checkouts SET lease_expires_at = now() - interval '1 second' WHERE id = %(id)s",
        {"id": row.id},
    )
    assert _app_order_ids((await local.get("/checkouts?stuck=1")).text) == [row.app_order_id]
    page = (await local.get(f"/checkouts/{row.id}")).text
    assert "Step create_cart is in flight" in page


async def test_a_live_step_older_than_its_settle_window_is_stuck(
    local: httpx.AsyncClient, shop: Shop
) -> None:
    row = await shop.orch.start(checkout_request(skus=DIGITAL, payment=TOKEN), run=False)
    # Settle window: 2 x total timeout (5 s) + settle time (0.3 s) from the step's start.
    await run_sql(
        shop.settings.database_url or "",
        "UPDATE checkouts SET in_flight = true, pending_step = 'create_cart', "
        "step_started_at = now() - interval '11 seconds', step_send_by = now() - interval "
        "'1 second', lease_owner = 'slow-worker', lease_expires_at = now() + interval '1 minute' "
        "WHERE id = %(id)s",
        {"id": row.id},
    )
    assert _app_order_ids((await local.get("/checkouts?stuck=1")).text) == [row.app_order_id]


async def test_pages_follow_each_other_by_cursor_without_gaps_or_repeats(
    local: httpx.AsyncClient, shop: Shop
) -> None:
    for _ in range(PAGE_SIZE):
        await shop.orch.start(checkout_request(payment=TOKEN), run=False)
    first = await local.get("/checkouts?unfinished=1")
    ids_first = _app_order_ids(first.text)
    assert len(ids_first) == PAGE_SIZE
    older = re.search(r'<a rel="next" href="(/checkouts\?[^"]+)">', first.text)
    assert older is not None
    # A checkout arriving between two pages does not shift the next page.
    newcomer = await shop.orch.start(checkout_request(payment=TOKEN), run=False)
    second = await local.get(older.group(1).replace("&amp;", "&"))
    ids_second = _app_order_ids(second.text)
    assert newcomer.app_order_id not in ids_second
    assert len(ids_second) == 2  # 50 + the two unfinished of the shop = 52
    assert set(ids_first).isdisjoint(ids_second)
    assert ids_second[-1] == shop.waiting.app_order_id
    assert 'rel="next"' not in second.text and "« newest" in second.text


@pytest.mark.parametrize("which", ["app_order_id", "id", "violet_order_id"])
async def test_search_finds_a_checkout_by_any_of_its_references(
    local: httpx.AsyncClient, shop: Shop, which: str
) -> None:
    reference = str(getattr(shop.declined, which))
    found = await local.get("/checkouts", params={"q": f"  {reference} "})
    assert found.status_code == 303
    assert found.headers["location"] == f"/checkouts/{shop.declined.id}"


async def test_a_search_for_nothing_says_so_and_escapes_what_was_typed(
    local: httpx.AsyncClient, shop: Shop
) -> None:
    page = await local.get("/checkouts", params={"q": "<script>alert('x')</script>"})
    assert page.status_code == 404
    assert "No checkout has the id, app_order_id or Violet order id" in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
    assert "<script>alert" not in page.text


async def test_a_failed_checkout_says_why_and_shows_its_whole_timeline(
    local: httpx.AsyncClient, shop: Shop
) -> None:
    page = (await local.get(f"/checkouts/{shop.exhausted.id}")).text
    assert "Failed at apply_customer: retries_exhausted (HTTP 503)" in page
    assert "an operational failure, not Violet&#39;s final word" in page
    events = await shop.orch.history(shop.exhausted.id)
    rows = re.findall(r'<tr class="k-[a-z]+" id="e(\d+)">', page)
    assert [int(seq) for seq in rows] == [e.seq for e in events]
    call = rf"POST /checkout/cart/{shop.exhausted.violet_order_id}/customer -&gt; 503 \d+ms"
    assert len(re.findall(call, page)) == 2  # both attempts, with status and latency
    assert "retryable/service_unavailable: injected fault: HTTP 503" in page
    assert "retry_scheduled" in page and "delay_s=" in page
    assert "created -&gt; failed" in page and "customer_applied" not in page

    declined = (await local.get(f"/checkouts/{shop.declined.id}")).text
    assert "Failed at submit: card_declined (HTTP 400)" in declined
    assert "Violet&#39;s final word" in declined

    submitted = (await local.get(f"/checkouts/{shop.submitted.id}")).text
    assert "priced -&gt; submitted" in submitted
    for bag in shop.submitted.bags:
        assert f"<tr><td>{bag['bag_id']}</td><td>{bag['merchant_name']}" in submitted
    assert str(shop.submitted.violet_order_id) in submitted


async def test_a_bag_action_is_listed_with_its_actor(local: httpx.AsyncClient, shop: Shop) -> None:
    bag_id = shop.submitted.bags[0]["bag_id"]
    await shop.orch.cancel_bag(shop.submitted.id, bag_id, actor="support:bob", reason="asked")
    page = (await local.get(f"/checkouts/{shop.submitted.id}")).text
    table = page[page.index("<h2>Bag actions</h2>") : page.index("<h2>Timeline")]
    assert "<td>cancel</td>" in table and "<td>support:bob</td>" in table
    assert "cancel of bag" in page and "by support:bob" in page


async def test_an_unknown_checkout_is_404(local: httpx.AsyncClient, shop: Shop) -> None:
    page = await local.get(f"/checkouts/{uuid.uuid4()}")
    assert page.status_code == 404
    assert "No such checkout" in page.text


async def test_a_database_that_does_not_answer_is_a_503_naming_no_secret(shop: Shop) -> None:
    from orchestrator.config import Settings
    from orchestrator.console import create_app

    values = shop.settings.model_dump(exclude={"console_users", "console_tokens"})
    values["database_url"] = "postgresql://postgres:hunter2-secret@127.0.0.1:1/nowhere"
    app = create_app(Settings(**values))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        page = await client.get("/checkouts")
    assert page.status_code == 503
    assert "the database is unavailable" in page.text and "hunter2" not in page.text


async def test_the_overview_shows_each_merchants_budget_its_pace_and_429s(
    local: httpx.AsyncClient, shop: Shop
) -> None:
    await run_sql(
        shop.settings.database_url,
        "INSERT INTO violet_throttle (key, blocked_until, rate_per_s, calls, rate_limited, "
        "tokens, tokens_at) VALUES ('merchant:20001', now() - interval '1 s', 1.5, 40, 7, "
        "-30, now())",
        {},
    )
    text = (await local.get("/")).text
    row = re.search(r"<td>merchant:20001</td>(.*?)</tr>", text, re.S)
    assert row is not None, text
    cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
    assert "1.50/s" in cells and cells[-2:] == ["40", "7"]
    assert "paced: next turn in" in row.group(1)
