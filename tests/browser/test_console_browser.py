"""What an operator does in the console, in Chromium: find a customer's order by its
app_order_id, read why it failed in its timeline, cancel a checkout through its confirmation,
be refused an action without the operator role, and run a bulk cancel's dry run first."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.browser.conftest import CARD, Scene, shot


async def test_find_an_order_by_its_app_order_id_and_read_why_it_failed(
    scene: Scene, operator_page: Page
) -> None:
    page = operator_page
    await page.goto(scene.url("/"))
    await expect(page.get_by_role("heading", name=re.compile("^Overview"))).to_be_visible()
    await expect(page.locator(".chart rect")).to_have_count(2)  # two error types this hour
    await expect(page.locator("tr.warn", has_text="global")).to_contain_text("pausing every")
    await shot(page, "overview")

    await page.get_by_role("searchbox", name="Find a checkout").fill(scene.declined.app_order_id)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(scene.url(f"/checkouts/{scene.declined.id}"))
    await expect(page.locator("#why")).to_contain_text("Failed at submit: card_declined (HTTP 400)")
    await expect(page.locator("#why")).to_contain_text("Violet's final word")
    submit_call = page.locator("tr.k-call", has_text="/submit -> 400")
    await expect(submit_call).to_have_count(1)
    await expect(submit_call).to_contain_text(
        f"POST /checkout/cart/{scene.declined.violet_order_id}"
    )
    await expect(page.locator("tr.k-bad", has_text="card_declined")).to_have_count(1)
    await shot(page, "checkout-failed")

    await page.goto(scene.url(f"/checkouts/{scene.submitted.id}"))
    await expect(page.locator("h1")).to_contain_text("submitted")
    submit_ok = page.locator("tr.k-call", has_text="/submit -> 200")
    await submit_ok.locator("summary").click()
    await expect(submit_ok.locator("pre").first).to_be_visible()
    await shot(page, "checkout")
    body = await page.content()
    assert CARD["card_number"] not in body and CARD["card_cvc"] not in body

    await page.goto(scene.url("/checkouts?state=failed"))
    await expect(page.locator("table.list tbody tr")).to_have_count(2)
    await shot(page, "list")


async def test_cancel_asks_for_confirmation_and_the_timeline_names_the_operator(
    scene: Scene, operator_page: Page
) -> None:
    page = operator_page
    await page.goto(scene.url(f"/checkouts/{scene.waiting.id}"))
    await page.get_by_role("link", name="Cancel…").click()
    await expect(page.get_by_role("heading", name="Cancel this checkout?")).to_be_visible()
    await expect(page.locator("form.confirm")).to_contain_text("console:alice")
    await shot(page, "confirm-cancel")
    await page.get_by_role("button", name="Cancel", exact=True).click()
    await expect(page).to_have_url(scene.url(f"/checkouts/{scene.waiting.id}?done=cancel"))
    await expect(page.locator("#done")).to_contain_text("Canceled.")
    await expect(page.locator("h1 .state")).to_have_text("canceled")
    await expect(page.locator("tr", has_text="canceled").locator(".actor")).to_have_text(
        "console:alice"
    )
    await shot(page, "checkout-canceled")


async def test_a_viewer_sees_no_action_and_is_refused_one(scene: Scene, viewer_page: Page) -> None:
    page = viewer_page
    await page.goto(scene.url(f"/checkouts/{scene.waiting.id}"))
    await expect(page.locator(".who")).to_have_text("victor · viewer")
    await expect(page.get_by_role("link", name="Cancel…")).to_have_count(0)
    answer = await page.goto(scene.url(f"/checkouts/{scene.waiting.id}/cancel"))
    assert answer is not None and answer.status == 403
    await expect(page.locator(".notice")).to_contain_text("may read the console, not act in it")
    await shot(page, "refused-viewer")
    posted = await page.request.post(
        scene.url(f"/checkouts/{scene.waiting.id}/cancel"), form={"csrf_token": "x"}
    )
    assert posted.status == 403
    await page.goto(scene.url(f"/checkouts/{scene.waiting.id}"))
    await expect(page.locator("h1 .state")).to_have_text("awaiting_confirmation")


async def test_bulk_cancel_shows_its_dry_run_before_anything_is_done(
    scene: Scene, operator_page: Page
) -> None:
    page = operator_page
    await page.goto(scene.url("/checkouts"))
    await page.get_by_label("unfinished").check()
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("table.list tbody tr")).to_have_count(3)
    await page.get_by_role("button", name="Cancel all matching…").click()
    await expect(page.get_by_role("heading", name=re.compile("Cancel 3 checkouts"))).to_be_visible()
    rows = page.locator("#would-touch tbody tr")
    await expect(rows).to_have_count(3)
    await expect(rows.filter(has_text=scene.waiting.app_order_id)).to_have_count(1)
    await expect(rows.filter(has_text=scene.registered.app_order_id)).to_have_count(1)
    await shot(page, "bulk-dry-run")
    await page.goto(scene.url(f"/checkouts/{scene.registered.id}"))
    await expect(page.locator("h1 .state")).to_have_text("new")  # the dry run did nothing
    await page.go_back()
    await page.get_by_role("button", name="Cancel these 3").click()
    await expect(page.get_by_role("heading")).to_have_text("Cancel: 3 of 3 done")
    await shot(page, "bulk-done")


async def test_find_a_failed_order_read_why_retry_it_and_see_the_retry_in_its_timeline(
    scene: Scene, operator_page: Page
) -> None:
    page = operator_page
    await page.goto(scene.url("/"))
    await page.get_by_role("searchbox", name="Find a checkout").fill(scene.exhausted.app_order_id)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(scene.url(f"/checkouts/{scene.exhausted.id}"))
    await expect(page.locator("#why")).to_contain_text("retries_exhausted")
    await page.get_by_role("link", name="Retry…").click()
    await expect(page.get_by_role("heading", name="Retry this failed checkout?")).to_be_visible()
    await page.get_by_label("reason").fill("Violet's outage is over")
    await shot(page, "confirm-retry")
    await page.get_by_role("button", name="Retry", exact=True).click()
    await expect(page).to_have_url(scene.url(f"/checkouts/{scene.exhausted.id}?done=retry"))
    await expect(page.locator("#done")).to_contain_text("Retried.")
    await expect(page.locator("h1 .state")).to_have_text("submitted")
    retried = page.locator("tr", has_text="retried")
    await expect(retried.locator(".actor")).to_have_text("console:alice")
    await expect(retried).to_contain_text("Violet's outage is over")
    await shot(page, "checkout-retried")
