"""The whole-call deadline bounds inline retry waits, and a 429 is never retried inline.

A 429 goes to the caller as it is, with its Retry-After (the runner defers the checkout and the
budgets learn of it): retrying at once would only spend the store's budget. The default backoff
of another retryable failure waits within what the call has left. A call never lasts much longer
than `total_timeout` ("the longest one call lasts, retries included"). No stamina testing mode
here on purpose: it zeroes the waits and would hide an overrun.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

from orchestrator.violet import VioletClient, VioletRateLimited, VioletRetryableError
from tests.fixtures.violet import client_on, day_long_token

TOTAL = 0.3
RETRY_AFTER = 2


class _RateLimited(httpx.AsyncBaseTransport):
    """Logs in, then answers every read 429 with a short Retry-After."""

    def __init__(self) -> None:
        self.reads: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/login"):
            return httpx.Response(200, json={"token": day_long_token(), "refresh_token": "rt"})
        self.reads.append(asyncio.get_running_loop().time())
        return httpx.Response(429, json={"message": "slow down"}, headers={"Retry-After": "2"})


def _client(transport: httpx.AsyncBaseTransport) -> VioletClient:
    return client_on(transport, total_timeout=TOTAL, read_retries=3)


async def test_a_rate_limited_read_is_handed_back_with_its_retry_after_not_retried() -> None:
    transport = _RateLimited()
    client = _client(transport)
    try:
        err: BaseException | None = None
        try:
            await client.get_cart(1)
        except VioletRetryableError as exc:
            err = exc
    finally:
        await client.aclose()
    assert len(transport.reads) == 1  # read_retries=3, yet no second try of a 429
    # The 429 itself, not "the call's total timeout passed before this request was sent".
    assert isinstance(err, VioletRateLimited), repr(err)
    assert err.retry_after == RETRY_AFTER


async def test_a_call_does_not_sleep_past_its_total_timeout_before_giving_up() -> None:
    client = _client(_RateLimited())
    started = time.perf_counter()
    try:
        with contextlib.suppress(VioletRetryableError):
            await client.get_cart(1)
    finally:
        await client.aclose()
    elapsed = time.perf_counter() - started
    # Sleeping the whole Retry-After would take ~2.0 s before the refused exchange gave up.
    assert elapsed < TOTAL + 0.5, f"a {TOTAL} s call lasted {elapsed:.2f} s"
