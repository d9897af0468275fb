"""The sandbox over real HTTP in its own process: what crash tests and benchmarks rely on.

Faults must look to httpx exactly like a real network failure (a dropped socket, a read
timeout), and the server must outlive and be observable across its clients.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psutil
import pytest

from orchestrator.sandbox import SandboxConfig, SandboxServer
from tests.fixtures.sandbox import HttpSandbox, RawViolet, prepare_cart, restore

NEW_CART: dict[str, Any] = {"skus": [{"sku_id": 196777}], "app_order_id": "http-1"}


@pytest.fixture
async def violet(http_sandbox: HttpSandbox) -> AsyncIterator[RawViolet]:
    async with httpx.AsyncClient(base_url=http_sandbox.base_url) as client:
        raw = RawViolet(client)
        await raw.login()
        yield raw


async def wait_for_call(sandbox: HttpSandbox, op: str, status: int) -> dict[str, Any]:
    """The server logs a call when it finishes with it; poll (bounded) until it has."""
    for _ in range(200):
        calls = [c for c in await sandbox.control.calls(op) if c["status"] == status]
        if calls:
            return calls[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the sandbox never finished a {op} call with status {status}")


def test_server_runs_in_its_own_process(sandbox_server: SandboxServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", sandbox_server.base_url)
    assert sandbox_server.control_url == sandbox_server.base_url[: -len("/v1")] + "/_sandbox"
    assert psutil.pid_exists(sandbox_server.pid)
    assert sandbox_server.pid != psutil.Process().pid


async def test_full_checkout_over_http(violet: RawViolet, http_sandbox: HttpSandbox) -> None:
    cart = await prepare_cart(violet, [196777, 196592])
    order = await violet.post(f"/checkout/cart/{cart['id']}/submit", json={})
    assert order.status_code == 200 and order.json()["status"] == "COMPLETED"
    assert (await http_sandbox.control.stats())["submits"] == {str(cart["id"]): 1}


async def test_drop_after_apply_is_a_dropped_connection_and_the_cart_exists(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    await http_sandbox.control.add_fault("create_cart", "drop_after_apply")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await violet.post("/checkout/cart", json=NEW_CART)
    stats = await http_sandbox.control.stats()
    assert stats["carts_created"] == 1
    found = await violet.post(
        "/orders/search", params={"exclude_in_progress": "false"}, json={"app_order_id": "http-1"}
    )
    assert [c["id"] for c in found.json()["content"]] == stats["carts_by_app_order_id"]["http-1"]


async def test_timeout_is_a_read_timeout_and_nothing_is_applied(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    await http_sandbox.control.add_fault("create_cart", "timeout", latency_ms=30_000)
    with pytest.raises(httpx.ReadTimeout):
        await violet.post("/checkout/cart", json=NEW_CART, timeout=0.3)
    call = await wait_for_call(http_sandbox, "create_cart", 499)  # the server saw us leave
    assert call["fault"] == "timeout"
    assert (await http_sandbox.control.stats())["carts_created"] == 0


async def test_503_then_recovery(violet: RawViolet, http_sandbox: HttpSandbox) -> None:
    await http_sandbox.control.add_fault("search_orders", "error")
    failed = await violet.post("/orders/search", json={})
    assert failed.status_code == 503 and failed.json()["code"] == 503
    assert (await violet.post("/orders/search", json={})).status_code == 200


async def test_each_test_gets_a_fresh_server_state(
    violet: RawViolet, http_sandbox: HttpSandbox
) -> None:
    """What ``http_sandbox`` does before every test undoes carts, faults, counters and config."""
    control = http_sandbox.control
    await prepare_cart(violet, [196777])
    await control.add_fault("get_cart", "error", count=3)
    await control.configure(latency_ms=1, latency_jitter_ms=1, token_ttl_seconds=5)
    await restore(control, http_sandbox.server.config)
    stats = await control.stats()
    assert stats["carts_created"] == 0 and stats["calls_by_op"] == {}
    assert await control.faults() == []
    config = await control.config()
    assert (config["latency_ms"], config["latency_jitter_ms"], config["token_ttl_seconds"]) == (
        0,
        0,
        86400,
    )


async def test_latency_jitter_is_validated_like_latency(http_sandbox: HttpSandbox) -> None:
    control = http_sandbox.control
    assert (await control.configure(latency_jitter_ms=5))["latency_jitter_ms"] == 5
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await control.configure(latency_jitter_ms=-1)
    assert refused.value.response.status_code == 400
    assert "latency_jitter_ms" in refused.value.response.text
    assert (await control.config())["latency_jitter_ms"] == 5  # unchanged by the refusal


def test_configured_server_passes_its_config_to_the_child() -> None:
    config = SandboxConfig(app_secret="other-secret", token_ttl_seconds=0)
    with SandboxServer(config) as server:
        headers = {"X-Violet-App-Id": str(config.app_id), "X-Violet-App-Secret": "other-secret"}
        with httpx.Client(base_url=server.base_url) as client:
            login = client.post(
                "/login",
                headers=headers,
                json={"username": config.username, "password": config.password},
            )
            assert login.status_code == 200
            headers["X-Violet-Token"] = login.json()["token"]
            expired = client.post("/orders/search", headers=headers, json={})
            assert (expired.status_code, expired.json()["error_code"]) == (401, 11)
        pid = server.pid
        assert "other-secret" not in " ".join(psutil.Process(pid).cmdline())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
