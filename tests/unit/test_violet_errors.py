"""Each HTTP answer or transport failure maps to the error class that says what to do next."""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import stamina

from orchestrator.violet import (
    Cart,
    VioletAuthError,
    VioletCartErrors,
    VioletClient,
    VioletError,
    VioletNotFound,
    VioletOutcomeUnknown,
    VioletPaymentDeclined,
    VioletPermanentError,
    VioletRateLimited,
    VioletRetryableError,
)
from orchestrator.violet.errors import parse_retry_after
from orchestrator.violet.models import TokenPayment
from tests.fixtures.violet import client_on, day_long_token

CART = {"id": 80001, "status": "IN_PROGRESS", "bags": [], "errors": []}
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


def client_for(handler: Handler, **kwargs: Any) -> tuple[VioletClient, list[httpx.Request]]:
    """A client whose Violet answers login itself and delegates every other call to handler."""
    seen: list[httpx.Request] = []

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/login":
            return httpx.Response(200, json={"token": day_long_token(), "refresh_token": "rt"})
        if request.url.path == "/v1/auth/token":
            return httpx.Response(200, json={"token": day_long_token()})
        seen.append(request)
        return handler(request)

    return client_on(httpx.MockTransport(route), **kwargs), seen


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return handler


def fail_with(exc_type: type[Exception]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)  # type: ignore[call-arg]

    return handler


STATUS_TABLE = [
    # status, body, read (get_cart) class, write (submit) class
    (400, {"code": 400, "error": "invalid_field", "message": "x"}, VioletPermanentError, None),
    (400, {"code": 400, "error": "card_declined", "message": "no"}, None, VioletPaymentDeclined),
    (402, {"error": "insufficient_funds"}, None, VioletPaymentDeclined),
    (404, {"code": 404, "error": "not_found", "message": "gone"}, VioletNotFound, VioletNotFound),
    (409, {"error": "conflict"}, VioletPermanentError, VioletPermanentError),
    (422, {"error": "unprocessable"}, VioletPermanentError, VioletPermanentError),
    (429, {"error": "rate_limited"}, VioletRateLimited, VioletRateLimited),
    (500, {"error": "internal"}, VioletRetryableError, VioletOutcomeUnknown),
    (502, None, VioletRetryableError, VioletRetryableError),
    (503, None, VioletRetryableError, VioletRetryableError),
    (504, None, VioletRetryableError, VioletOutcomeUnknown),
]


@pytest.mark.parametrize(("status", "body", "read_cls", "write_cls"), STATUS_TABLE)
async def test_status_classification(
    status: int, body: Any, read_cls: type[VioletError] | None, write_cls: type[VioletError] | None
) -> None:
    if read_cls is not None:
        client, seen = client_for(answer(status, body), read_retries=0)
        with pytest.raises(read_cls) as info:
            await client.get_cart(80001)
        assert type(info.value) is read_cls
        assert info.value.status == status and info.value.method == "GET"
        assert info.value.path == "/checkout/cart/80001" and info.value.op == "get_cart"
        await client.aclose()
    if write_cls is not None:
        client, seen = client_for(answer(status, body), read_retries=3)
        with pytest.raises(write_cls) as winfo:
            await client.submit(80001, app_order_id="o-1")
        assert type(winfo.value) is write_cls
        assert len(seen) == 1, "a write is never retried inside the client"
        await client.aclose()


DECLINE_TABLE = [
    # status, body, Violet's type, decline reason
    (
        400,
        {"code": 400, "error": "card_declined", "message": "no"},
        "card_declined",
        "card_declined",
    ),
    (402, {"error": "insufficient_funds"}, "insufficient_funds", "insufficient_funds"),
    (402, None, None, "card_declined"),
    (
        400,
        {
            "code": 400,
            "error": "EXTERNAL_SUBMIT_CART",
            "message": "Your card was declined.",
            "errors": [{"type": "EXTERNAL_SUBMIT_CART", "decline_code": "card_declined"}],
        },
        "EXTERNAL_SUBMIT_CART",
        "card_declined",
    ),
    (
        422,
        {"errors": [{"type": "EXTERNAL_SET_PAYMENT_METHOD", "decline_code": "do_not_honor"}]},
        "EXTERNAL_SET_PAYMENT_METHOD",
        "do_not_honor",
    ),
    (400, {"error": "payment_failed", "code": "expired_card"}, "payment_failed", "expired_card"),
]


@pytest.mark.parametrize(("status", "body", "violet_type", "reason"), DECLINE_TABLE)
async def test_a_decline_anywhere_in_the_body_is_a_payment_decline(
    status: int, body: Any, violet_type: str | None, reason: str
) -> None:
    client, _ = client_for(answer(status, body))
    with pytest.raises(VioletPaymentDeclined) as info:
        await client.apply_payment(80001, TokenPayment(token="tok_visa"))
    assert info.value.is_decline
    assert (info.value.error_type, info.value.decline_code) == (violet_type, reason)
    await client.aclose()


async def test_a_decline_inside_a_200_carts_errors_is_a_decline_of_its_cart_error() -> None:
    cart = {
        **CART,
        "errors": [{"type": "EXTERNAL_SET_PAYMENT_METHOD", "decline_code": "insufficient_funds"}],
    }
    client, _ = client_for(answer(200, cart))
    with pytest.raises(VioletCartErrors) as info:
        await client.apply_payment(80001, TokenPayment(token="tok_visa"))
    assert info.value.error_type == "EXTERNAL_SET_PAYMENT_METHOD"
    assert info.value.decline_code == "insufficient_funds"
    await client.aclose()


async def test_an_error_that_is_not_a_decline_has_no_decline_code() -> None:
    client, _ = client_for(answer(400, {"code": 400, "error": "EXTERNAL_SUBMIT_CART"}))
    with pytest.raises(VioletPermanentError) as info:
        await client.submit(80001)
    assert type(info.value) is VioletPermanentError and not info.value.is_decline
    await client.aclose()


def test_classification_attribute_per_class() -> None:
    assert VioletRetryableError("x").classification == "retryable"
    assert VioletRateLimited("x").classification == "retryable"
    assert VioletOutcomeUnknown("x").classification == "outcome_unknown"
    assert VioletPermanentError("x").classification == "permanent"
    assert VioletNotFound("x").classification == "permanent"
    assert VioletPaymentDeclined("x").classification == "permanent"
    assert VioletAuthError("x").classification == "auth"


TRANSPORT_TABLE = [
    # exception, read class, write class
    (httpx.ConnectError, VioletRetryableError, VioletRetryableError),
    (httpx.ConnectTimeout, VioletRetryableError, VioletRetryableError),
    (httpx.PoolTimeout, VioletRetryableError, VioletRetryableError),
    (httpx.ReadTimeout, VioletRetryableError, VioletOutcomeUnknown),
    (httpx.WriteTimeout, VioletRetryableError, VioletOutcomeUnknown),
    (httpx.RemoteProtocolError, VioletRetryableError, VioletOutcomeUnknown),
    (httpx.ReadError, VioletRetryableError, VioletOutcomeUnknown),
    (httpx.UnsupportedProtocol, VioletPermanentError, VioletPermanentError),
]


@pytest.mark.parametrize(("exc_type", "read_cls", "write_cls"), TRANSPORT_TABLE)
async def test_transport_classification(
    exc_type: type[Exception], read_cls: type[VioletError], write_cls: type[VioletError]
) -> None:
    client, _ = client_for(fail_with(exc_type), read_retries=0)
    with pytest.raises(read_cls) as info:
        await client.get_cart(1)
    assert type(info.value) is read_cls and info.value.status is None
    with pytest.raises(write_cls) as winfo:
        await client.create_cart(skus=[], app_order_id="o-1")
    assert type(winfo.value) is write_cls
    await client.aclose()


async def test_reads_are_retried_writes_only_when_never_sent() -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] < 3:
            raise httpx.RemoteProtocolError("dropped", request=request)
        return httpx.Response(200, json=CART)

    client, _ = client_for(flaky, read_retries=3)
    cart = await client.get_cart(80001)
    assert cart.id == 80001 and calls["n"] == 3

    # a dropped write is never retried
    calls["n"] = 0
    with pytest.raises(VioletOutcomeUnknown):
        await client.submit(80001)
    assert calls["n"] == 1

    # a write that could not even connect is retried
    def refused_then_ok(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=CART)

    calls["n"] = 0
    client2, _ = client_for(refused_then_ok, read_retries=3)
    assert (await client2.submit(80001)).id == 80001
    assert calls["n"] == 2
    await client.aclose()
    await client2.aclose()


async def test_read_retries_give_up_with_the_last_error() -> None:
    client, seen = client_for(answer(503), read_retries=2)
    with pytest.raises(VioletRetryableError):
        await client.get_cart(1)
    assert len(seen) == 3
    await client.aclose()


async def test_rate_limit_carries_retry_after() -> None:
    client, seen = client_for(answer(429, {"error": "rate"}, {"Retry-After": "120"}))
    with pytest.raises(VioletRateLimited) as info:
        await client.get_cart(1)
    assert info.value.retry_after == 120.0
    assert len(seen) == 1, "a long Retry-After is the caller's to honour, not ours to sleep"
    await client.aclose()


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("1000000000", 1e9),
        ("1e15", 1e15),
        ("9" * 400, math.inf),  # beyond any float: longer than any cap
        ("inf", math.inf),
        ("Infinity", math.inf),
        ("-5", 0.0),
        ("-inf", 0.0),
        ("nan", None),
        ("NaN", None),
        ("0x10", None),
        ("1_000", None),
        ("Fri, 31 Dec 9999 23:59:59 GMT", "far"),
        ("Mon, 01 Jan 0001 00:00:00 GMT", 0.0),
        ("Sat, 01 Jan 10000 00:00:00 GMT", None),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 0.0),
        ("\x00\x01", None),
    ],
)
def test_parse_retry_after_survives_hostile_values(
    header: str, expected: float | str | None
) -> None:
    """Whatever Violet (or a proxy) sends, the result is None or a number >= 0 (infinity
    included, for the caller to cap), never an exception and never NaN."""
    parsed = parse_retry_after(header)
    if expected == "far":
        assert parsed is not None and parsed > 100 * 365 * 86400
    else:
        assert parsed == expected


async def test_client_total_timeout_is_outcome_unknown_for_writes() -> None:
    import asyncio

    class Slow(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/login"):
                return httpx.Response(200, json={"token": day_long_token(), "refresh_token": "rt"})
            await asyncio.sleep(5)
            return httpx.Response(200, json=CART)

    client = client_on(Slow(), total_timeout=0.05, read_retries=0)
    with pytest.raises(VioletOutcomeUnknown):
        await client.submit(1)
    with pytest.raises(VioletRetryableError):
        await client.get_cart(1)
    await client.aclose()


async def test_total_timeout_bounds_a_whole_call_with_its_retries() -> None:
    """A read retried inline (and its login) still ends within the total timeout: the settle
    window for an unanswered submit is built on a call never lasting longer."""
    import asyncio

    seen: list[str] = []

    class SlowAndFailing(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.url.path)
            await asyncio.sleep(0.15)
            if request.url.path.endswith("/login"):
                return httpx.Response(200, json={"token": day_long_token(), "refresh_token": "rt"})
            return httpx.Response(503, json={"message": "busy"})

    client = client_on(SlowAndFailing(), total_timeout=0.5, read_retries=8)
    started = time.perf_counter()
    with pytest.raises(VioletRetryableError):
        await client.get_cart(1)
    elapsed = time.perf_counter() - started
    await client.aclose()
    assert len(seen) >= 3  # it did retry
    assert elapsed < 1.0 and len(seen) < 9, (elapsed, seen)  # 9 reads of 0.15 s: 1.35 s


async def test_cart_errors_on_mutations_but_data_on_reads() -> None:
    errored = {
        **CART,
        "errors": [{"type": "EXTERNAL_ADD_ITEM", "message": "out of stock", "bag_id": 3}],
    }
    client, _ = client_for(answer(200, errored))
    with pytest.raises(VioletCartErrors) as info:
        await client.price_cart(80001)
    assert info.value.cart.id == 80001
    assert info.value.errors[0].type == "EXTERNAL_ADD_ITEM"
    assert info.value.error_type == "EXTERNAL_ADD_ITEM" and info.value.status == 200
    assert isinstance(info.value, VioletPermanentError)
    cart = await client.get_cart(80001)
    assert cart.errors[0].message == "out of stock"
    await client.aclose()


async def test_submit_partial_acceptance_is_returned_not_raised() -> None:
    partial = {
        "id": 9,
        "status": "COMPLETED",
        "bags": [{"id": 1, "status": "ACCEPTED"}, {"id": 2, "status": "REJECTED"}],
        "errors": [{"type": "EXTERNAL_SUBMIT_CART", "bag_id": 2, "message": "rejected"}],
    }
    client, _ = client_for(answer(200, partial))
    cart = await client.submit(9)
    assert [b.id for b in cart.rejected_bags] == [2]
    rejected = {**partial, "bags": [{"id": 2, "status": "REJECTED"}]}
    client2, _ = client_for(answer(200, rejected))
    with pytest.raises(VioletCartErrors):
        await client2.submit(9)
    await client.aclose()
    await client2.aclose()


async def test_submit_always_sends_a_json_body() -> None:
    client, seen = client_for(answer(200, CART))
    await client.submit(80001)
    await client.submit(80001, app_order_id="o-7")
    assert seen[0].content == b"{}"
    assert seen[1].content == b'{"app_order_id":"o-7"}'
    assert seen[0].headers["content-type"] == "application/json"
    await client.aclose()


async def test_unreadable_answer() -> None:
    client, _ = client_for(lambda r: httpx.Response(200, content=b"<html>oops</html>"))
    with pytest.raises(VioletOutcomeUnknown):
        await client.create_cart(skus=[], app_order_id="o")
    with pytest.raises(VioletPermanentError):
        await client.get_cart(1)
    await client.aclose()


def test_errors_pickle_and_print_with_context() -> None:
    err = VioletRateLimited(
        "slow down", retry_after=2.0, status=429, method="GET", path="/x", request_id="r-1"
    )
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is VioletRateLimited and clone.retry_after == 2.0 and clone.status == 429
    assert "slow down" in str(err) and "GET /x -> 429" in str(err) and "r-1" in str(err)
    carts = VioletCartErrors("bad", cart=Cart(id=1), errors=[])
    assert pickle.loads(pickle.dumps(carts)).cart.id == 1


class _Endless(httpx.AsyncByteStream):
    """A body that never ends, in 64 KiB chunks; asking for more than `allowed` is the bug."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            assert self.allowed > 0, "read past the cap"
            self.allowed -= 1
            yield b" " * 65536


@pytest.mark.parametrize("declared", [True, False])
async def test_an_answer_over_the_cap_is_refused_without_reading_it_all(declared: bool) -> None:
    """Content-Length over the cap is refused before any byte of the body; without one, reading
    stops at the cap. A read's answer is retryable, a write's an outcome unknown."""
    headers = {"content-length": str(10**12)} if declared else {}

    def huge(request: httpx.Request) -> httpx.Response:
        body = _Endless(allowed=0 if declared else 256 // 64 + 1)  # the one over the cap
        return httpx.Response(200, headers=headers, stream=body)

    client, _ = client_for(huge, max_response_bytes=256 * 1024, read_retries=0)
    with pytest.raises(VioletRetryableError) as read_err:
        await client.get_cart(1)
    with pytest.raises(VioletOutcomeUnknown) as write_err:
        await client.submit(1)
    for err in (read_err.value, write_err.value):
        assert err.error_type == "response_too_large" and err.status == 200
        assert "VIOLET_MAX_RESPONSE_BYTES" in str(err)
    await client.aclose()
