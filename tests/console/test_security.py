"""Who gets in, what every answer carries, and what never leaves: logins and roles from
settings, localhost only without them, escaped text from Violet and callers, no card data."""

from __future__ import annotations

import re

import httpx
import pytest

from orchestrator.config import load_settings
from orchestrator.errors import ConfigError
from orchestrator.sandbox import SandboxControl
from tests.console.conftest import (
    BEARER_OPERATOR,
    BEARER_VIEWER,
    CARD,
    CARD_NUMBER,
    OPERATOR,
    VIEWER,
    Shop,
    basic,
    csrf_of,
)
from tests.fixtures.db import run_sql
from tests.fixtures.orchestrator import DIGITAL, TOKEN, checkout_request

HOSTILE = "<script>alert('pwned')</script><img src=x onerror=alert(2)>"


async def test_with_logins_nobody_gets_in_without_one(
    guarded: httpx.AsyncClient, shop: Shop
) -> None:
    refused = await guarded.get("/")
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    assert 'Basic realm="orchestrator console"' in challenge and "Bearer" in challenge
    for headers in (
        basic((OPERATOR[0], "wrong-password")),
        basic(("mallory", OPERATOR[1])),
        basic((VIEWER[0], OPERATOR[1])),  # a right password of another login
        {"Authorization": "Bearer not-a-token-at-all-xxxxxxxx"},
        {"Authorization": f"Bearer {BEARER_VIEWER}x"},
        {"Authorization": "Basic !!!"},
        {"Authorization": f"Digest {BEARER_VIEWER}"},
    ):
        assert (await guarded.get("/", headers=headers)).status_code == 401, headers
    for headers, shown in (
        (basic(OPERATOR), "alice · operator"),
        (basic(VIEWER), "victor · viewer"),
        ({"Authorization": f"Bearer {BEARER_VIEWER}"}, "ci · viewer"),
        ({"Authorization": f"bearer {BEARER_OPERATOR}"}, "deploy · operator"),
    ):
        page = await guarded.get("/checkouts", headers=headers)
        assert page.status_code == 200 and shown in page.text
    # The static files are behind the same door.
    assert (await guarded.get("/static/console.css")).status_code == 401


async def test_without_logins_only_this_machine_is_served(shop: Shop) -> None:
    async with shop.client() as local:
        page = await local.get("/")
        assert page.status_code == 200 and "@localhost · operator" in page.text
        # A DNS name pointing a browser at 127.0.0.1 (DNS rebinding) is not this machine.
        rebound = await local.get("/", headers={"Host": "evil.example:8470"})
        assert rebound.status_code == 403
        assert "no authentication configured" in rebound.text
    app = shop.client()._transport
    assert isinstance(app, httpx.ASGITransport)
    remote = httpx.ASGITransport(app=app.app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=remote, base_url="http://127.0.0.1") as client:
        assert (await client.get("/")).status_code == 403
    async with shop.client(host="[::1]:8470") as ipv6:
        assert (await ipv6.get("/")).status_code == 200


async def test_every_answer_carries_the_security_headers(
    local: httpx.AsyncClient, guarded: httpx.AsyncClient, shop: Shop
) -> None:
    for answer in (
        await local.get("/"),
        await local.get("/static/console.js"),
        await local.post(f"/checkouts/{shop.waiting.id}/cancel"),
        await guarded.get("/"),
    ):
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"


async def test_pages_hold_no_script_nor_style_of_their_own(local: httpx.AsyncClient) -> None:
    """Everything the pages run or style with comes from /static (the CSP allows nothing else)."""
    for path in ("/", "/checkouts"):
        text = (await local.get(path)).text
        assert re.findall(r"<script(?![^>]*\bsrc=)", text) == []
        assert " style=" not in text and "<style" not in text
        assert re.search(r"<[^>]+\son[a-z]+=", text) is None  # no inline event handler


async def test_violet_and_caller_text_is_escaped_everywhere(
    local: httpx.AsyncClient, shop: Shop, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.add_fault("customer", "error", status=400, message=HOSTILE)
    failed = await shop.orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
    assert failed.state == "failed" and HOSTILE in str(failed.last_error)
    # Text no request may carry, as another writer of the database could leave it.
    await run_sql(
        shop.settings.database_url or "",
        "UPDATE checkouts SET app_order_id = %(hostile)s, bags = jsonb_build_array("
        "jsonb_build_object('bag_id', 1, 'merchant_id', 2, 'merchant_name', %(hostile)s::text, "
        "'status', %(hostile)s::text)) WHERE id = %(id)s",
        {"hostile": HOSTILE, "id": shop.scheduled.id},
    )
    pages = [
        await local.get("/"),
        await local.get("/checkouts"),
        await local.get(f"/checkouts/{failed.id}"),
        await local.get(f"/checkouts/{shop.scheduled.id}"),
        await local.get(f"/checkouts/{shop.scheduled.id}/cancel"),
        await local.get("/bulk/cancel?unfinished=1"),
        await local.get("/checkouts", params={"error_type": HOSTILE}),
    ]
    for page in pages:
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, page.url
    escaped = (
        "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"
    )
    assert escaped in pages[2].text  # the error, as Violet wrote it, shown as text
    assert escaped in pages[1].text and escaped in pages[3].text  # app_order_id, merchant
    assert escaped in pages[5].text


async def test_no_page_shows_the_card_number_or_cvc(
    local: httpx.AsyncClient, shop: Shop, database_url: str
) -> None:
    assert shop.submitted.payment_kind == "card"  # this checkout was paid with CARD
    assert CARD["card_cvc"] == "7391"
    confirm = await local.get(f"/checkouts/{shop.waiting.id}/cancel")
    await local.post(
        f"/checkouts/{shop.waiting.id}/cancel", data={"csrf_token": csrf_of(confirm.text)}
    )
    paths = [
        "/",
        "/?window=7d",
        "/checkouts",
        "/checkouts?state=submitted",
        "/bulk/cancel?since=1d",
    ]
    for checkout in (shop.submitted, shop.declined, shop.exhausted, shop.waiting, shop.canceled):
        paths += [f"/checkouts/{checkout.id}", f"/checkouts/{checkout.id}/cancel"]
        paths.append(f"/checkouts/{checkout.id}/run")
    seen = 0
    for path in paths:
        page = await local.get(path)
        assert page.status_code in (200, 409), path
        for secret in (CARD_NUMBER, "4242 4242 4242 4242", "4242-4242-4242-4242", "7391"):
            assert secret not in page.text, (path, secret)
        seen += len(page.text)
    assert seen > 50_000  # the pages were there to be searched
    submitted = (await local.get(f"/checkouts/{shop.submitted.id}")).text
    assert "apply_payment" in submitted and "payment</dt><dd>card" in submitted


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("console_users", "alice:root:password123", "role must be one of viewer, operator"),
        ("console_users", "alice:operator:short", "the secret must be 8 to 1024 characters"),
        ("console_tokens", "ci:viewer:tooshort-token", "the secret must be 16 to 1024"),
        ("console_users", "alice operator password", "expected NAME:ROLE:SECRET"),
        ("console_users", "a b:viewer:password123", "the name must be 1-64 letters"),
        ("console_secret", "short", "ORCHESTRATOR_CONSOLE_SECRET"),
    ],
)
def test_bad_logins_are_refused_at_start_naming_the_setting_never_the_secret(
    env: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(**{env: value})
    text = str(raised.value)
    assert message in text
    assert value.split(":")[-1] not in text  # the secret (or the whole value) is not echoed
