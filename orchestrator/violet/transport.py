"""Getting one request to Violet and its answer back, and the deadline and retries of one call.

The client builds requests and reads answers; this module owns the wire: the connection pools,
the client's own deadline, the send gate at the moment the first byte would be written, the cap
on an answer's size, and the inline retries a call may make. It never repeats a call that may
have been applied (only reads, and requests that provably never left the process, are retried),
nor one answered 429 (a closed budget is the caller's to wait for, durably, violet/pacing.py);
every failure comes back as a classified Violet error, which the client records.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Final, TypeVar

import httpx
import stamina

from orchestrator.errors import OrchestratorError
from orchestrator.violet.errors import (
    PRE_SEND_ERRORS,
    VioletBudgetClosed,
    VioletError,
    VioletOutcomeUnknown,
    VioletRateLimited,
    VioletRetryableError,
    VioletSendRefused,
    error_from_transport,
)
from orchestrator.violet.gate import SendGate, current_gate
from orchestrator.violet.ops import Op
from orchestrator.violet.pacing import current_pacer
from orchestrator.violet.sent import TraceHook, request_leaving, request_sent_hook

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "Transport"]

_T = TypeVar("_T")

#: The largest answer read (VIOLET_MAX_RESPONSE_BYTES): a cart or an order page is a few kB.
DEFAULT_MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024
#: The longest wait stamina's default backoff picks between inline retries (wait_max + jitter).
_MAX_BACKOFF_S = 6.0
#: The deadline of the Violet call this task is making (loop time), for its exchanges.
_CALL_DEADLINE: ContextVar[float | None] = ContextVar("violet_call_deadline", default=None)


class Transport:
    """Sends requests to one Violet base URL over pooled connections; one per client."""

    def __init__(
        self,
        *,
        base_url: str,
        connect_timeout: float,
        read_timeout: float,
        total_timeout: float,
        transport: httpx.AsyncBaseTransport | None,
        read_retries: int,
        max_connections: int,
        http_shards: int | None,
        max_response_bytes: int,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._max_response_bytes = max_response_bytes
        self._total_timeout = total_timeout
        self._read_retries = max(0, read_retries)
        self._transports = _pools(transport, max_connections, http_shards)
        self._next_transport = itertools.cycle(self._transports)
        # httpcore (our own pools, the proxied client, a host's httpx.AsyncHTTPTransport) reports
        # when a request has been sent; another transport given by the host may not (sent.py).
        self._traced = transport is None or isinstance(transport, httpx.AsyncHTTPTransport)
        self._proxied: httpx.AsyncClient | None = None
        if transport is None and _environment_proxies():
            self._proxied = httpx.AsyncClient(
                follow_redirects=False, limits=httpx.Limits(max_connections=max_connections)
            )
        self._timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        ).as_dict()

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def total_timeout(self) -> float:
        return self._total_timeout

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()
        if self._proxied is not None:
            await self._proxied.aclose()

    # ------------------------------------------------------------ one call: deadline + retries

    async def call(self, op: Op, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Run `attempt` (one try of `op`: auth and its exchanges) under the call's deadline,
        retrying it inline only when that cannot repeat an applied request.

        No request of the call (login or refresh, retries) is sent, nor waited for, past the
        total timeout from the call's start: the runner's settle window for an unanswered submit
        or create_cart is built on it. (Cheaper than a timeout around the call: each exchange
        ends by the call's deadline, and none starts after it.)
        """
        token = _CALL_DEADLINE.set(asyncio.get_running_loop().time() + self._total_timeout)
        try:
            return await self._retrying(op, _paced(op, attempt))
        finally:
            _CALL_DEADLINE.reset(token)

    async def _retrying(self, op: Op, attempt: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await attempt()
        except VioletRetryableError as exc:
            if self._read_retries == 0 or _retry_delay(op, exc) is False:
                raise
            first: VioletError | None = exc
        # Slow path: only now pay for a retry loop. The first failure is replayed inside it so
        # that stamina's backoff and attempt count include it.
        async for retry in stamina.retry_context(
            on=lambda exc: _retry_delay(op, exc),
            attempts=self._read_retries + 1,
            timeout=None,
            wait_initial=0.1,
            wait_max=5.0,
        ):
            with retry:
                if first is not None:
                    pending, first = first, None
                    raise pending
                return await attempt()
        raise AssertionError("unreachable: stamina re-raises the last failure")

    # ------------------------------------------------------------ one exchange

    async def send(
        self,
        op: Op,
        path: str,
        body: Any,
        params: dict[str, str] | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        """Send once under the client's own deadline and read the answer (closed, content held);
        transport failures, a refused send and an oversized answer become Violet errors."""
        gate = current_gate() if op.gated else None
        request = self._request(op, path, body, params, headers, gate)
        deadline = _exchange_deadline(self._total_timeout, op, path)
        try:
            async with asyncio.timeout_at(deadline):
                if not self._traced:  # handing it over is as close to "sent" as we can see
                    if gate is not None:
                        _check_gate(gate, op, path)
                    request_leaving()
                if self._proxied is not None:
                    response = await self._proxied.send(request, stream=True)
                else:
                    response = await next(self._next_transport).handle_async_request(request)
                    response.request = request
                try:
                    await _read_at_most(response, self._max_response_bytes)
                finally:
                    await response.aclose()
        except _AnswerTooLarge as too_large:
            raise self._too_large(op, path, too_large) from None
        except (httpx.RequestError, TimeoutError) as exc:
            err = error_from_transport(exc, op=op.name, method=op.method, path=path, read=op.read)
            raise err from exc
        return response

    def _request(
        self,
        op: Op,
        path: str,
        body: Any,
        params: dict[str, str] | None,
        headers: dict[str, str],
        gate: SendGate | None,
    ) -> httpx.Request:
        extensions: dict[str, Any] = {"timeout": self._timeout}
        if self._traced:
            trace = _trace_hook(gate, request_sent_hook(), op, path)
            if trace is not None:
                extensions["trace"] = trace
        request = httpx.Request(
            op.method,
            self._base_url + path,
            params=params,
            headers=headers,
            content=None if body is None else _encode_json(body),
            extensions=extensions,
        )
        if body is not None:
            request.headers["Content-Type"] = "application/json"
        return request

    def _too_large(self, op: Op, path: str, too_large: _AnswerTooLarge) -> VioletError:
        """A read's answer cut off is retryable (nothing was applied, and the next answer may be
        a normal one; a probe of an unknown outcome must not fail the checkout over it); a
        write's is an outcome unknown (it may have been applied): reconcile."""
        cls = VioletRetryableError if op.read else VioletOutcomeUnknown
        return cls(
            f"Violet's answer is over {self._max_response_bytes} bytes (VIOLET_MAX_RESPONSE_BYTES):"
            f" cut off after {too_large.size} bytes",
            status=too_large.status,
            method=op.method,
            path=path,
            op=op.name,
            request_id=too_large.request_id,
            error_type="response_too_large",
        )


# ---------------------------------------------------------------- helpers


def _paced(op: Op, attempt: Callable[[], Awaitable[_T]]) -> Callable[[], Awaitable[_T]]:
    """`attempt`, each try of it first taking its turn on the merchants' budgets (when the
    caller paces its calls and `op` reaches their platforms), and telling them of a 429."""
    pacer = current_pacer() if op.platform else None
    if pacer is None:
        return attempt

    async def paced() -> _T:
        await pacer.admit(op)
        try:
            return await attempt()
        except VioletRateLimited as exc:
            await pacer.rate_limited(op, exc.retry_after)
            raise

    return paced


def _pools(
    transport: httpx.AsyncBaseTransport | None, max_connections: int, http_shards: int | None
) -> list[httpx.AsyncBaseTransport]:
    """The transports requests go round-robin over: the host's one, or a few small pools.

    httpcore scans every pooled connection (a poll syscall each) on every request, so one
    client with many connections slows down as concurrency grows: requests go round-robin
    over a few smaller pools instead (an in-process transport needs only one).
    The bench measured pools of 25 still spending 25% of a recovery's CPU in that scan;
    pools of at most 8 connections keep it small (default: ceil(max_connections / 8)).
    Requests go straight to a transport, not through httpx.AsyncClient: Violet needs no
    cookies, redirects or auth flows, and those layers cost a third of a call's CPU
    (docs/performance.md). Proxies from the environment keep the full client path. The TLS
    context honours SSL_CERT_FILE and SSL_CERT_DIR, as httpx's own default does.
    """
    if transport is not None:
        return [transport]
    if http_shards is None:
        http_shards = -(-max_connections // 8)
    shards = max(1, min(http_shards, max_connections))
    per_shard = max(1, max_connections // shards)
    limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
    # One TLS context for every pool: building one loads the CA bundle (~18 ms), and a client
    # of 100 connections has 13 pools, a quarter of a second at each process start.
    tls = httpx.create_ssl_context()
    return [httpx.AsyncHTTPTransport(verify=tls, limits=limits, http2=False) for _ in range(shards)]


def _exchange_deadline(total_timeout: float, op: Op, path: str) -> float:
    """When this exchange must be over (loop time): its own total timeout, or the call's
    deadline if that comes first; raises when the call's time is up, so nothing is sent."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_timeout
    call_deadline = _CALL_DEADLINE.get()
    if call_deadline is not None and call_deadline < deadline:  # the call's deadline binds
        deadline = call_deadline
        if deadline <= loop.time():  # never send once the call's time is up
            raise VioletRetryableError(
                "the call's total timeout passed before this request was sent",
                method=op.method,
                path=path,
                op=op.name,
            )
    return deadline


def _retry_delay(op: Op, exc: Exception) -> bool | float:
    """stamina hook: False = do not retry; True = default backoff; float = wait that long."""
    if not isinstance(exc, VioletRetryableError) or isinstance(exc, VioletSendRefused):
        return False  # a refused send would be refused again: the runner reconciles
    if isinstance(exc, VioletRateLimited | VioletBudgetClosed):
        # A budget is closed: trying again at once would only be answered 429 again (and
        # spend the store's budget for nothing). The caller defers the call durably.
        return False
    call_deadline = _CALL_DEADLINE.get()
    left = float("inf")
    if call_deadline is not None:
        left = call_deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return False  # the call's time is up
    # A failure in the auth phase (login/refresh) means this op's request was never sent.
    never_sent = exc.op != op.name or isinstance(exc.__cause__, PRE_SEND_ERRORS)
    if not (op.read or never_sent):
        return False
    if left < _MAX_BACKOFF_S:
        # stamina's next wait might outlast the call: wait within what is left instead.
        return min(1.0, left / 2)
    return True


class _AnswerTooLarge(OrchestratorError):
    """An answer longer than the client reads; what is known of it. It never leaves this module
    (`Transport.send` turns it into a VioletError), but derives from the root like every error."""

    def __init__(self, size: int, status: int, request_id: str | None) -> None:
        super().__init__(size)
        self.size = size
        self.status = status
        self.request_id = request_id


async def _read_at_most(response: httpx.Response, limit: int) -> None:
    """`response.aread()`, but refusing an answer over `limit` bytes (decoded, so a compressed
    bomb counts at its real size) before holding more than that in memory."""
    request_id = response.headers.get("x-request-id")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _AnswerTooLarge(int(declared), response.status_code, request_id)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _AnswerTooLarge(size, response.status_code, request_id)
        chunks.append(chunk)
    response._content = b"".join(chunks)  # what aread() stores: .content, .json() read it


def _check_gate(gate: SendGate, op: Op, path: str) -> None:
    refusal = gate.refusal()
    if refusal is not None:
        raise VioletSendRefused(refusal, method=op.method, path=path, op=op.name)


def _trace_hook(
    gate: SendGate | None, sent_hook: TraceHook | None, op: Op, path: str
) -> TraceHook | None:
    """The httpcore trace extension for one request: the send gate, checked once the connection
    is ready and before the first byte of the request is written (raising there aborts the
    request; httpcore closes the connection), and the "request sent" signal (sent.py)."""
    if gate is None:
        return sent_hook

    async def trace(name: str, info: dict[str, Any]) -> None:
        if name.endswith("send_request_headers.started"):
            _check_gate(gate, op, path)
        if sent_hook is not None:
            await sent_hook(name, info)

    return trace


def _encode_json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _environment_proxies() -> bool:
    """True when HTTP(S)_PROXY/ALL_PROXY is set: then requests take httpx's full client path."""
    return any(key in urllib.request.getproxies() for key in ("http", "https", "all"))
