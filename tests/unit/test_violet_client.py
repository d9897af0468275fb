"""Auth (lazy, single-flight, refresh on 401, re-login), call capture and settings wiring."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.violet import (
    CardPayment,
    VioletAuthError,
    VioletClient,
    VioletRetryableError,
    capture_calls,
)
from tests.fixtures.violet import make_jwt

CART = {"id": 80001, "status": "IN_PROGRESS", "bags": [], "errors": []}


class FakeViolet:
    """Just enough of Violet's auth to exercise the client: tokens, expiry, refusals."""

    def __init__(self, ttl: float = 86400.0) -> None:
        self.ttl = ttl
        self.calls: Counter[str] = Counter()
        self.valid: set[str] = set()
        self.refresh_ok = True
        self.login_ok = True
        self.reject_everything = False
        self.serial = 0

    def mint(self) -> str:
        self.serial += 1
        now = time.time()
        token = make_jwt({"exp": now + self.ttl, "iat": now, "n": self.serial})
        self.valid.add(token)
        return token

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1")
        self.calls[path] += 1
        assert request.headers["X-Violet-App-Id"] == "10000"
        assert request.headers["X-Violet-App-Secret"] == "app-secret"
        if path == "/login":
            if not self.login_ok:
                return httpx.Response(401, json={"status": 401, "message": "bad credentials"})
            return httpx.Response(200, json={"token": self.mint(), "refresh_token": "rt-1"})
        if path == "/auth/token":
            if not self.refresh_ok or request.headers.get("X-Violet-Token") != "rt-1":
                return httpx.Response(401, json={"status": 401, "message": "bad refresh"})
            return httpx.Response(200, json={"token": self.mint()})
        token = request.headers.get("X-Violet-Token")
        if self.reject_everything or token not in self.valid:
            return httpx.Response(401, json={"status": 401, "message": "Token has expired"})
        return httpx.Response(200, json=CART, headers={"X-Request-Id": "req-42"})


def make_client(fake: FakeViolet, **kwargs: Any) -> VioletClient:
    return VioletClient(
        base_url="http://violet.test/v1",
        app_id=10000,
        app_secret=SecretStr("app-secret"),
        username="owner@example.com",
        password=SecretStr("pw-123456"),
        transport=httpx.MockTransport(fake),
        **kwargs,
    )


async def test_login_is_lazy_and_happens_once() -> None:
    fake = FakeViolet()
    async with make_client(fake) as client:
        assert fake.calls["/login"] == 0
        await asyncio.gather(*(client.get_cart(80001) for _ in range(20)))
        assert fake.calls["/login"] == 1
        assert fake.calls["/checkout/cart/80001"] == 20


async def test_401_refreshes_once_and_retries_once() -> None:
    fake = FakeViolet()
    async with make_client(fake) as client:
        await client.get_cart(80001)
        fake.valid.clear()  # Violet revoked every token early
        cart = await client.get_cart(80001)
        assert cart.id == 80001
        assert fake.calls["/auth/token"] == 1 and fake.calls["/login"] == 1
        assert fake.calls["/checkout/cart/80001"] == 3


async def test_concurrent_401s_trigger_a_single_refresh() -> None:
    fake = FakeViolet()
    async with make_client(fake) as client:
        await client.login()
        fake.valid.clear()
        await asyncio.gather(*(client.get_cart(80001) for _ in range(50)))
        assert fake.calls["/auth/token"] == 1


async def test_expired_token_is_refreshed_before_use_single_flight() -> None:
    fake = FakeViolet(ttl=-1.0)  # every token is born expired
    async with make_client(fake) as client:
        await client.login()
        fake.ttl = 86400.0
        await asyncio.gather(*(client.get_cart(80001) for _ in range(50)))
        assert fake.calls["/auth/token"] == 1
        assert fake.calls["/checkout/cart/80001"] == 50


async def test_refused_refresh_falls_back_to_login() -> None:
    fake = FakeViolet()
    async with make_client(fake) as client:
        await client.login()
        fake.valid.clear()
        fake.refresh_ok = False
        assert (await client.get_cart(80001)).id == 80001
        assert fake.calls["/auth/token"] == 1 and fake.calls["/login"] == 2


async def test_auth_error_when_401_survives_refresh() -> None:
    fake = FakeViolet()
    async with make_client(fake) as client:
        fake.reject_everything = True
        with pytest.raises(VioletAuthError) as info:
            await client.get_cart(80001)
        assert info.value.status == 401
        assert fake.calls["/checkout/cart/80001"] == 2


async def test_bad_credentials_at_login() -> None:
    fake = FakeViolet()
    fake.login_ok = False
    async with make_client(fake) as client:
        with pytest.raises(VioletAuthError):
            await client.login()
        with pytest.raises(VioletAuthError):
            await client.submit(80001)
        assert fake.calls["/checkout/cart/80001/submit"] == 0


async def test_capture_records_every_call_including_failures() -> None:
    fake = FakeViolet()
    async with make_client(fake) as client:
        await client.get_cart(80001)  # outside: not recorded anywhere
        with capture_calls() as calls:
            await client.get_cart(80001)
            fake.reject_everything = True
            with pytest.raises(VioletAuthError):
                await client.submit(80001, app_order_id="o-1")
    ops = [(c.op, c.status, c.error) for c in calls]
    assert ops == [
        ("get_cart", 200, None),
        ("submit", 401, None),
        ("refresh", 200, None),
        ("submit", 401, "VioletAuthError"),
    ]
    first = calls[0]
    assert first.method == "GET" and first.path == "/checkout/cart/80001"
    assert first.request_id == "req-42" and first.latency_ms >= 0
    assert first.response is not None and first.response["id"] == 80001
    assert calls[1].request == {"app_order_id": "o-1"}


async def test_capture_is_per_task() -> None:
    fake = FakeViolet()
    async with make_client(fake) as client:

        async def work(n: int) -> list[str]:
            with capture_calls() as calls:
                for _ in range(n):
                    await client.get_cart(80001)
                    await asyncio.sleep(0)
            return [c.op for c in calls]

        results = await asyncio.gather(work(1), work(3), work(5))
    # The first task to need a token performs the (single) login; nobody sees another's calls.
    assert list(results) == [["login", "get_cart"], ["get_cart"] * 3, ["get_cart"] * 5]


async def test_transport_failure_is_recorded_without_status() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = VioletClient(
        base_url="http://violet.test/v1",
        app_id=1,
        app_secret="s",
        username="u",
        password="p",
        transport=httpx.MockTransport(refuse),
        read_retries=0,
    )
    with capture_calls() as calls, pytest.raises(VioletRetryableError):
        await client.get_cart(1)
    assert [(c.op, c.status, c.error) for c in calls] == [("login", None, "VioletRetryableError")]
    assert calls[0].request is None, "the login body holds the password"
    await client.aclose()


async def test_payment_request_is_recorded_masked(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeViolet()
    card = CardPayment(
        card_number=SecretStr("4242424242424242"),
        card_cvc=SecretStr("314"),
        card_exp_month=12,
        card_exp_year=2034,
        card_postal_code="11211",
    )
    async with make_client(fake) as client:
        with caplog.at_level(logging.DEBUG, logger="orchestrator.violet"), capture_calls() as c:
            await client.apply_payment(80001, card)
    record = c[-1]
    assert record.op == "payment" and record.request is not None
    assert record.request["card_number"] == "****4242"
    assert "card_cvc" not in record.request
    assert "4242424242424242" not in repr(c) and "'314'" not in repr(c)
    assert "payment POST /checkout/cart/80001/payment -> 200" in caplog.text
    assert "4242424242424242" not in caplog.text and "pw-123456" not in caplog.text
    assert "app-secret" not in caplog.text


def test_from_settings() -> None:
    settings = Settings(
        violet_base_url="http://127.0.0.1:9/v1",
        violet_app_id=10000,
        violet_app_secret=SecretStr("app-secret"),
        violet_username="owner@example.com",
        violet_password=SecretStr("pw"),
        total_timeout=7.0,
    )
    client = VioletClient.from_settings(settings)
    assert "app-secret" not in repr(client)
    with pytest.raises(ConfigError, match="VIOLET_APP_SECRET, VIOLET_PASSWORD"):
        VioletClient.from_settings(Settings(violet_app_id=1, violet_username="u"))


async def test_environment_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests skip httpx.AsyncClient for speed, except when a proxy is configured: a fake
    proxy on a real socket must see the absolute-form requests for Violet's host."""
    fake = FakeViolet()
    seen: list[str] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            lines = head.decode().split("\r\n")
            seen.append(lines[0])
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            size = int(headers.get("Content-Length", headers.get("content-length", "0")))
            body = await reader.readexactly(size)
            method, url, _ = lines[0].split(" ")
            answer = fake(httpx.Request(method, url, headers=headers, content=body))
            await answer.aread()
            writer.write(
                f"HTTP/1.1 {answer.status_code} OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(answer.content)}\r\n\r\n".encode()
                + answer.content
            )
            await writer.drain()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with (
        server,
        VioletClient(
            base_url="http://violet.test/v1",
            app_id=10000,
            app_secret=SecretStr("app-secret"),
            username="owner@example.com",
            password=SecretStr("pw-123456"),
        ) as client,
    ):
        cart = await client.get_cart(80001)
    assert cart.id == 80001
    assert seen == [
        "POST http://violet.test/v1/login HTTP/1.1",
        "GET http://violet.test/v1/checkout/cart/80001 HTTP/1.1",
    ]
