"""Actions from the console: each behind a confirmation, done through the front door, recorded
in the audit trail with the operator as actor; refused (403, nothing changed) without the
operator role or without the form's CSRF token; bulk runs touch exactly what their dry run
listed."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from starlette.routing import Route

from orchestrator import audit
from orchestrator.console import create_app
from orchestrator.console.auth import Principal
from orchestrator.errors import InvalidRequest
from tests.console.conftest import (
    BEARER_OPERATOR,
    BEARER_VIEWER,
    OPERATOR,
    VIEWER,
    Shop,
    basic,
    csrf_of,
)
from tests.fixtures.orchestrator import TOKEN, checkout_request


async def _events(shop: Shop, ref: uuid.UUID) -> list[tuple[str, dict[str, object] | None]]:
    return [(e.kind, e.detail) for e in await shop.orch.history(ref)]


async def test_cancel_asks_for_confirmation_then_records_the_operator(
    local: httpx.AsyncClient, shop: Shop
) -> None:
    page = (await local.get(f"/checkouts/{shop.waiting.id}")).text
    assert f'href="/checkouts/{shop.waiting.id}/cancel">Cancel…</a>' in page
    confirm = await local.get(f"/checkouts/{shop.waiting.id}/cancel")
    assert confirm.status_code == 200 and "Cancel this checkout?" in confirm.text
    assert (await shop.orch.get(shop.waiting.id)).state == "awaiting_confirmation"  # not yet

    done = await local.post(
        f"/checkouts/{shop.waiting.id}/cancel", data={"csrf_token": csrf_of(confirm.text)}
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/checkouts/{shop.waiting.id}?done=cancel"
    assert (await shop.orch.get(shop.waiting.id)).state == "canceled"
    actor = next(d for k, d in await _events(shop, shop.waiting.id) if k == "canceled")
    assert actor is not None and str(actor["actor"]).startswith("console:")
    assert str(actor["actor"]).endswith("@localhost")

    shown = (await local.get(done.headers["location"])).text
    assert 'id="done">Canceled.' in shown
    assert f'<b class="actor">{actor["actor"]}</b>' in shown  # in the timeline


async def test_run_now_drives_a_scheduled_checkout_at_once_and_names_who_asked(
    guarded: httpx.AsyncClient, shop: Shop
) -> None:
    before = await shop.orch.get(shop.scheduled.id)
    assert before.next_attempt_at is not None and before.state == "new"
    confirm = await guarded.get(f"/checkouts/{shop.scheduled.id}/run", headers=basic(OPERATOR))
    assert confirm.status_code == 200 and "Run this checkout now?" in confirm.text
    done = await guarded.post(
        f"/checkouts/{shop.scheduled.id}/run",
        data={"csrf_token": csrf_of(confirm.text)},
        headers=basic(OPERATOR),
    )
    assert done.status_code == 303
    assert (await shop.orch.get(shop.scheduled.id)).state == "submitted"
    asked = [d for k, d in await _events(shop, shop.scheduled.id) if k == "run_requested"]
    assert asked == [{"actor": "console:alice"}]


async def test_a_refused_action_says_why_and_changes_nothing(
    local: httpx.AsyncClient, shop: Shop
) -> None:
    confirm = await local.get(f"/checkouts/{shop.submitted.id}/cancel")
    assert confirm.status_code == 409
    assert "submitted: cannot be canceled" in confirm.text
    assert 'method="post"' not in confirm.text
    token = csrf_of((await local.get(f"/checkouts/{shop.waiting.id}/cancel")).text)
    before = await _events(shop, shop.submitted.id)
    refused = await local.post(f"/checkouts/{shop.submitted.id}/cancel", data={"csrf_token": token})
    assert refused.status_code == 409
    assert "cannot cancel a checkout in state &#39;submitted&#39;" in refused.text
    assert await _events(shop, shop.submitted.id) == before


async def test_a_post_without_its_csrf_token_is_403_and_changes_nothing(
    local: httpx.AsyncClient, shop: Shop
) -> None:
    for data in ({}, {"csrf_token": "1700000000.forged"}, {"csrf_token": ""}):
        refused = await local.post(f"/checkouts/{shop.waiting.id}/cancel", data=data)
        assert refused.status_code == 403, data
        assert "security token" in refused.text
    ids = {"id": [str(shop.waiting.id), str(shop.scheduled.id)]}
    assert (await local.post("/bulk/cancel", data=ids)).status_code == 403
    assert (await shop.orch.get(shop.waiting.id)).state == "awaiting_confirmation"
    assert (await shop.orch.get(shop.scheduled.id)).state == "new"
    assert "canceled" not in [k for k, _ in await _events(shop, shop.waiting.id)]


async def test_every_post_route_checks_role_and_csrf(shop: Shop, local: httpx.AsyncClient) -> None:
    """Whatever POST the route table grows, it is built by `operator_post`: no token, 403."""
    app = create_app(shop.settings, engine=shop.orch.engine, orchestrator=shop.orch)
    posts = [r for r in app.routes if isinstance(r, Route) and "POST" in (r.methods or ())]
    assert {r.name for r in posts} == {"perform", "bulk"}
    for route in posts:
        assert getattr(route.endpoint, "csrf_protected", False), route.path
        path = route.path.format(ref=shop.waiting.id, action="cancel")
        assert (await local.post(path, data={"id": str(shop.waiting.id)})).status_code == 403
    assert (await shop.orch.get(shop.waiting.id)).state == "awaiting_confirmation"


async def test_a_token_rendered_for_someone_else_is_refused(
    guarded: httpx.AsyncClient, shop: Shop
) -> None:
    alices = csrf_of(
        (await guarded.get(f"/checkouts/{shop.waiting.id}/cancel", headers=basic(OPERATOR))).text
    )
    refused = await guarded.post(
        f"/checkouts/{shop.waiting.id}/cancel",
        data={"csrf_token": alices},
        headers={"Authorization": f"Bearer {BEARER_OPERATOR}"},
    )
    assert refused.status_code == 403
    assert (await shop.orch.get(shop.waiting.id)).state == "awaiting_confirmation"


@pytest.mark.parametrize(
    ("who", "principal"),
    [
        (basic(VIEWER), Principal(VIEWER[0], "viewer", "basic")),
        ({"Authorization": f"Bearer {BEARER_VIEWER}"}, Principal("ci", "viewer", "bearer")),
    ],
    ids=["basic", "bearer"],
)
async def test_a_viewer_sees_no_action_and_may_not_act(
    guarded: httpx.AsyncClient, shop: Shop, who: dict[str, str], principal: Principal
) -> None:
    page = await guarded.get(f"/checkouts/{shop.waiting.id}", headers=who)
    assert page.status_code == 200 and "viewer" in page.text
    assert "/cancel" not in page.text and "/run" not in page.text
    listed = await guarded.get("/checkouts?unfinished=1", headers=who)
    assert "all matching" not in listed.text
    assert (
        await guarded.get(f"/checkouts/{shop.waiting.id}/cancel", headers=who)
    ).status_code == 403
    assert (await guarded.get("/bulk/cancel?unfinished=1", headers=who)).status_code == 403
    # Even with a valid CSRF token of their own (no page renders a form for them).
    transport = guarded._transport
    assert isinstance(transport, httpx.ASGITransport)
    own = transport.app.state.console.csrf.issue(principal)  # type: ignore[attr-defined]
    for path, data in (
        (f"/checkouts/{shop.waiting.id}/cancel", {"csrf_token": own}),
        ("/bulk/cancel", {"csrf_token": own, "id": str(shop.waiting.id)}),
    ):
        refused = await guarded.post(path, data=data, headers=who)
        assert refused.status_code == 403
        assert "not act" in refused.text
    assert (await shop.orch.get(shop.waiting.id)).state == "awaiting_confirmation"


async def test_bulk_cancel_shows_exactly_what_it_would_touch_then_touches_only_that(
    local: httpx.AsyncClient, shop: Shop
) -> None:
    refused = await local.get("/bulk/cancel")
    assert refused.status_code == 400 and "Choose a filter first" in refused.text

    listed = (await local.get("/checkouts?since=1h")).text
    assert "Cancel all matching…" in listed
    dry = await local.get("/bulk/cancel?since=1h")
    assert dry.status_code == 200
    touch = dry.text[dry.text.index('id="would-touch"') : dry.text.index("</table>")]
    shown = set(re.findall(r'name="id" value="([0-9a-f-]{36})"', touch))
    assert shown == {str(shop.waiting.id), str(shop.scheduled.id)}  # the unfinished ones
    assert "Cancel 2 checkouts?" in dry.text
    assert shop.submitted.app_order_id not in dry.text  # finished: not even a candidate
    # The dry run changed nothing.
    assert (await shop.orch.get(shop.waiting.id)).state == "awaiting_confirmation"

    # A checkout arriving after the dry run is not touched by its confirmation.
    late = await shop.orch.start(checkout_request(payment=TOKEN), run=False)
    done = await local.post(
        "/bulk/cancel", data={"csrf_token": csrf_of(dry.text), "id": sorted(shown)}
    )
    assert done.status_code == 200
    assert "Cancel: 2 of 2 done" in done.text
    for ref in (shop.waiting.id, shop.scheduled.id):
        checkout = await shop.orch.get(ref)
        assert checkout.state == "canceled"
        detail = next(d for k, d in await _events(shop, ref) if k == "canceled")
        assert detail is not None and str(detail["actor"]).startswith("console:")
    assert (await shop.orch.get(late.id)).state == "new"


async def test_a_bulk_run_reports_each_refusal(local: httpx.AsyncClient, shop: Shop) -> None:
    dry = await local.get("/bulk/cancel?state=awaiting_confirmation")
    done = await local.post(
        "/bulk/cancel",
        data={"csrf_token": csrf_of(dry.text), "id": [str(shop.waiting.id), str(shop.declined.id)]},
    )
    assert done.status_code == 200 and "Cancel: 1 of 2 done" in done.text
    assert "cannot cancel a checkout in state &#39;failed&#39;" in done.text
    bad = await local.post("/bulk/cancel", data={"csrf_token": csrf_of(dry.text), "id": "x"})
    assert bad.status_code == 400


async def test_the_front_door_records_an_actor_and_refuses_a_bad_one(shop: Shop) -> None:
    with pytest.raises(InvalidRequest) as raised:
        await shop.orch.cancel(shop.waiting.id, actor="  ")
    assert [name for name, _ in raised.value.fields] == ["actor"]
    with pytest.raises(InvalidRequest):
        await shop.orch.run(shop.scheduled.id, actor="card 4242424242424242")
    assert (await shop.orch.get(shop.waiting.id)).state == "awaiting_confirmation"
    await shop.orch.cancel(shop.waiting.id, actor="support:carol")
    events = await audit.timeline(shop.orch.engine, shop.waiting.id)
    canceled = next(e for e in events if e.kind == "canceled")
    assert canceled.detail == {"violet_cart_released": True, "actor": "support:carol"}


async def test_retry_is_offered_for_an_operational_failure_only_and_reads_violet_first(
    local: httpx.AsyncClient, shop: Shop
) -> None:
    declined = (await local.get(f"/checkouts/{shop.declined.id}")).text
    assert f'href="/checkouts/{shop.declined.id}/retry"' not in declined
    refused = await local.get(f"/checkouts/{shop.declined.id}/retry")
    assert refused.status_code == 409 and "the card was declined" in refused.text

    page = (await local.get(f"/checkouts/{shop.exhausted.id}")).text
    assert f'href="/checkouts/{shop.exhausted.id}/retry">Retry…</a>' in page
    confirm = await local.get(f"/checkouts/{shop.exhausted.id}/retry")
    assert confirm.status_code == 200 and "Retry this failed checkout?" in confirm.text
    assert (await shop.orch.get(shop.exhausted.id)).state == "failed"  # not yet
    done = await local.post(
        f"/checkouts/{shop.exhausted.id}/retry",
        data={"csrf_token": csrf_of(confirm.text), "reason": "Violet was down"},
    )
    assert done.status_code == 303
    assert (await shop.orch.get(shop.exhausted.id)).state == "submitted"
    retried = next(d for k, d in await _events(shop, shop.exhausted.id) if k == "retried")
    assert retried is not None and str(retried["actor"]).startswith("console:")
    assert retried["reason"] == "Violet was down"
    shown = (await local.get(done.headers["location"])).text
    assert 'id="done">Retried.' in shown and "Violet was down" in shown


async def test_bulk_retry_reopens_what_its_dry_run_listed_and_leaves_the_drive_to_recovery(
    local: httpx.AsyncClient, shop: Shop
) -> None:
    dry = await local.get("/bulk/retry?since=1h")
    assert dry.status_code == 200
    touch = dry.text[dry.text.index('id="would-touch"') : dry.text.index("</table>")]
    shown = set(re.findall(r'name="id" value="([0-9a-f-]{36})"', touch))
    assert shown == {str(shop.exhausted.id)}  # the declined one is refused, not touched
    done = await local.post(
        "/bulk/retry", data={"csrf_token": csrf_of(dry.text), "id": sorted(shown)}
    )
    assert done.status_code == 200 and "Retry: 1 of 1 done" in done.text
    reopened = await shop.orch.get(shop.exhausted.id)
    assert reopened.state != "failed" and reopened.in_flight  # due now, read Violet first
    assert (await shop.orch.get(shop.declined.id)).state == "failed"
