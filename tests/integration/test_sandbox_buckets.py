"""Per-merchant rate limits in the sandbox, over real HTTP: each merchant platform's leaky
bucket, Violet relaying its 429 with Retry-After, and the buckets' counts on the control surface.

Leak rates are tiny where a test counts requests, so no token comes back while it runs; the one
test about leaking compresses time and asserts counts with wide margins, never timings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchestrator.sandbox import SandboxConfig, SandboxControl, SandboxServer
from tests.fixtures.sandbox import HttpSandbox, RawViolet, prepare_cart

SPACE_DRINKS, VIOLET_GARDEN = 10068, 10189
SLUSHIE, FLOWER = 196777, 196592  # one SKU of each
NO_LEAK = 0.001
"""Requests a second: no measurable refill while a test runs, so levels and counts are exact."""


@pytest.fixture
async def violet(http_sandbox: HttpSandbox) -> AsyncIterator[RawViolet]:
    async with httpx.AsyncClient(base_url=http_sandbox.base_url) as client:
        raw = RawViolet(client)
        await raw.login()
        yield raw


async def create(violet: RawViolet, *skus: int) -> httpx.Response:
    return await violet.post(
        "/checkout/cart", json={"base_currency": "USD", "skus": [{"sku_id": s} for s in skus]}
    )


async def new_cart(violet: RawViolet, *skus: int) -> int:
    response = await create(violet, *skus)
    assert response.status_code == 200, response.text
    return int(response.json()["id"])


def merchant(view: dict[str, Any], merchant_id: int) -> dict[str, Any]:
    found: dict[str, Any] = view["merchants"][str(merchant_id)]
    return found


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == {
        "code": 429,
        "error": "rate_limited",
        "message": "Too many requests to the merchant platform; retry later",
    }


async def test_disabled_by_default(violet: RawViolet, http_sandbox: HttpSandbox) -> None:
    assert await http_sandbox.control.buckets() == {"enabled": False, "merchants": {}}
    cart_id = await new_cart(violet, SLUSHIE)
    statuses = [
        (await violet.get(f"/checkout/cart/{cart_id}/price")).status_code for _ in range(60)
    ]
    assert statuses == [200] * 60
    assert (await http_sandbox.control.buckets())["merchants"] == {}


async def test_a_burst_beyond_the_bucket_gets_429_with_retry_after_and_no_effect(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    control = http_sandbox.control
    view = await control.configure_buckets(size=3, leak_per_s=NO_LEAK)
    assert view == {
        "enabled": True,
        "size": 3,
        "leak_per_s": NO_LEAK,
        "time_scale": 1.0,
        "merchants": {},
    }
    cart_id = await new_cart(violet, SLUSHIE)
    for _ in range(2):
        assert (await violet.get(f"/checkout/cart/{cart_id}/price")).status_code == 200

    refused = await create(violet, SLUSHIE)
    assert_rate_limited(refused)
    # One request leaks out in 1000 s; Retry-After is that wait in whole seconds.
    assert refused.headers["Retry-After"] == "1000"
    assert (await control.stats())["carts_created"] == 1

    customer = {"email": "a@example.com", "first_name": "A", "last_name": "B"}
    refused = await violet.post(f"/checkout/cart/{cart_id}/customer", json=customer)
    assert_rate_limited(refused)
    assert (await control.cart(cart_id))["has_customer"] is False
    throttled = await control.calls("customer", cart_id)
    assert [(c["status"], c["throttled_by"]) for c in throttled] == [(429, [SPACE_DRINKS])]

    # Reads of Violet's own record never reach the platform.
    for _ in range(5):
        assert (await violet.get(f"/checkout/cart/{cart_id}")).status_code == 200
    bucket = merchant(await control.buckets(), SPACE_DRINKS)
    assert bucket["admitted"] == 3 and bucket["rate_limited"] == 2
    assert bucket["size"] == 3 and bucket["level"] == pytest.approx(3, abs=0.01)


async def test_tokens_come_back_at_the_leak_rate(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    control = http_sandbox.control
    # 10 requests leaking 1 a bucket second, a bucket second lasting 0.05 s: 20 a second.
    size, leak, scale = 10, 1.0, 0.05
    await control.configure_buckets(size=size, leak_per_s=leak, time_scale=scale)
    started = time.monotonic()
    cart_id = await new_cart(violet, SLUSHIE)
    statuses: list[int] = []
    while time.monotonic() - started < 1.0:
        response = await violet.get(f"/checkout/cart/{cart_id}/price")
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "0.05"  # 1 bucket second, scaled
    elapsed = time.monotonic() - started

    admitted = 1 + statuses.count(200)
    leaked = elapsed / scale * leak
    assert set(statuses) == {200, 429}
    assert admitted <= size + leaked + 1
    assert admitted >= size + leaked / 2  # the bucket holds 10 refills, riding out stalls
    bucket = merchant(await control.buckets(), SPACE_DRINKS)
    assert (bucket["admitted"], bucket["rate_limited"]) == (admitted, statuses.count(429))

    # Waiting what Retry-After asks (with room to spare) is enough for one more call.
    while (await violet.get(f"/checkout/cart/{cart_id}/price")).status_code == 200:
        pass
    await asyncio.sleep(0.05 + 0.1)
    assert (await violet.get(f"/checkout/cart/{cart_id}/price")).status_code == 200


async def test_merchants_are_independent_and_may_have_their_own_limits(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    control = http_sandbox.control
    await control.configure_buckets(
        size=2, leak_per_s=NO_LEAK, merchants={VIOLET_GARDEN: {"size": 4}}
    )
    drinks, garden = await new_cart(violet, SLUSHIE), await new_cart(violet, FLOWER)
    assert (await violet.get(f"/checkout/cart/{drinks}/price")).status_code == 200
    assert_rate_limited(await violet.get(f"/checkout/cart/{drinks}/price"))
    for _ in range(3):
        assert (await violet.get(f"/checkout/cart/{garden}/price")).status_code == 200
    assert_rate_limited(await violet.get(f"/checkout/cart/{garden}/price"))

    view = await control.buckets()
    assert {
        m: (b["size"], b["admitted"], b["rate_limited"]) for m, b in view["merchants"].items()
    } == {
        str(SPACE_DRINKS): (2, 2, 1),
        str(VIOLET_GARDEN): (4, 4, 1),
    }


async def test_a_two_merchant_cart_takes_from_both_or_from_neither(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    control = http_sandbox.control
    await control.configure_buckets(size=3, leak_per_s=NO_LEAK)
    both = await new_cart(violet, SLUSHIE, FLOWER)
    assert (await violet.get(f"/checkout/cart/{both}/price")).status_code == 200
    levels = {m: round(b["level"]) for m, b in (await control.buckets())["merchants"].items()}
    assert levels == {str(SPACE_DRINKS): 2, str(VIOLET_GARDEN): 2}

    await new_cart(violet, SLUSHIE)  # Space Drinks' bucket is now full
    assert_rate_limited(await violet.get(f"/checkout/cart/{both}/price"))
    view = await control.buckets()
    assert merchant(view, SPACE_DRINKS)["rate_limited"] == 1
    garden = merchant(view, VIOLET_GARDEN)
    assert (round(garden["level"]), garden["admitted"], garden["rate_limited"]) == (2, 2, 0)
    assert (await control.calls("price", both))[-1]["throttled_by"] == [SPACE_DRINKS]
    await new_cart(violet, FLOWER)  # the refused call left room in the other merchant's bucket


async def test_a_bag_operation_takes_only_from_its_merchant(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    cart = await prepare_cart(violet, [SLUSHIE, FLOWER])
    order = await violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    assert order.status_code == 200, order.text
    garden_bag = next(b["id"] for b in order.json()["bags"] if b["merchant_id"] == VIOLET_GARDEN)
    await http_sandbox.control.configure_buckets(size=1, leak_per_s=NO_LEAK)

    cancel = f"/orders/{cart['id']}/bags/{garden_bag}/cancel"
    assert (await violet.post(cancel, json={})).status_code == 202
    assert_rate_limited(await violet.post(cancel, json={}))
    assert (await violet.get(f"/orders/{cart['id']}")).status_code == 200
    view = await http_sandbox.control.buckets()
    assert list(view["merchants"]) == [str(VIOLET_GARDEN)]


async def test_reset_and_disable_and_bad_settings(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    control = http_sandbox.control
    await control.configure_buckets(size=1, leak_per_s=NO_LEAK)
    await new_cart(violet, SLUSHIE)
    assert_rate_limited(await create(violet, SLUSHIE))
    assert (await control.disable_buckets()) == {"enabled": False, "merchants": {}}
    assert (await create(violet, SLUSHIE)).status_code == 200

    await control.configure_buckets(size=1, leak_per_s=NO_LEAK)
    await control.reset()  # back to the sandbox's startup settings: off
    assert await control.buckets() == {"enabled": False, "merchants": {}}

    async with httpx.AsyncClient(base_url=http_sandbox.control_url) as raw:
        for body in (
            {"size": 0},
            {"size": 2.5},
            {"leak_per_s": 0},
            {"time_scale": -1},
            {"enabled": "no"},
            {"leak_rate": 2},
            {"merchants": {"shopify": {"size": 2}}},
            {"merchants": {str(SPACE_DRINKS): {"size": 2, "rate": 1}}},
            [],
        ):
            response = await raw.post("/buckets", json=body)
            assert response.status_code == 400, body
            assert response.json()["error"] in ("invalid_field", "invalid_request_body")
    assert await control.buckets() == {"enabled": False, "merchants": {}}


async def test_buckets_from_the_command_line_survive_a_reset() -> None:
    config = SandboxConfig(bucket_size=2, bucket_leak_per_s=NO_LEAK, bucket_time_scale=0.5)
    with SandboxServer(config) as server:
        async with (
            SandboxControl(server.control_url) as control,
            httpx.AsyncClient(base_url=server.base_url) as client,
        ):
            violet = RawViolet(client)
            await violet.login()
            await new_cart(violet, SLUSHIE)
            await new_cart(violet, SLUSHIE)
            refused = await create(violet, SLUSHIE)
            assert_rate_limited(refused)
            assert refused.headers["Retry-After"] == "500"  # 1000 bucket seconds x 0.5
            await control.reset()
            view = await control.buckets()
            assert (view["enabled"], view["size"], view["time_scale"]) == (True, 2, 0.5)
            assert view["merchants"] == {}
            await new_cart(violet, SLUSHIE)
