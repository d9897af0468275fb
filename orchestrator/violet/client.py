"""Async client for Violet's checkout API: auth, classification, safe retries, audit capture.

One instance holds one pooled ``httpx.AsyncClient`` and one JWT shared by every caller. It never
repeats a call that may have been applied (only reads, and requests that provably never left the
process, are retried here); everything else is classified and handed to the caller, who owns the
durable retry and reconcile logic.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import httpx
import stamina
from pydantic import SecretStr, TypeAdapter, ValidationError

from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.sensitive import redact_excerpt, register_credential, register_token
from orchestrator.violet.auth import TokenState
from orchestrator.violet.calls import (
    CallRecord,
    current_records,
    summarize_cart,
    summarize_error_body,
    summarize_request,
)
from orchestrator.violet.errors import (
    PRE_SEND_ERRORS,
    VioletAuthError,
    VioletCartErrors,
    VioletError,
    VioletOutcomeUnknown,
    VioletPermanentError,
    VioletRateLimited,
    VioletRetryableError,
    VioletSendRefused,
    error_from_response,
    error_from_transport,
)
from orchestrator.violet.gate import SendGate, current_gate
from orchestrator.violet.models import (
    Address,
    BagShippingMethods,
    Cart,
    Customer,
    OrderCancellation,
    PaymentMethod,
    ShippingSelection,
    SkuLine,
    _OrderPage,
)
from orchestrator.violet.redact import RedactingFilter, scrub_text
from orchestrator.violet.sent import TraceHook, request_leaving, request_sent_hook

__all__ = ["VioletClient", "VioletSettings"]

_log = logging.getLogger(__name__)
_log.addFilter(RedactingFilter())

_T = TypeVar("_T")

# A Retry-After longer than this is the caller's to honour (durably), not ours to sleep through.
MAX_INLINE_RETRY_AFTER: Final = 10.0
#: The largest answer read (VIOLET_MAX_RESPONSE_BYTES): a cart or an order page is a few kB.
DEFAULT_MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024

_SHIPPING_ADAPTER: Final = TypeAdapter(list[BagShippingMethods])
_CART_LIST_ADAPTER: Final = TypeAdapter(list[Cart])


@dataclass(frozen=True, slots=True)
class _Op:
    """One Violet operation: its audit name, HTTP method, and whether it is an idempotent read.

    `gated`: repeating it makes a second cart, charge or order, so while the runner sets a send
    gate (violet/gate.py) it is sent only if the gate allows it.
    """

    name: str
    method: str
    read: bool
    gated: bool = False


_LOGIN = _Op("login", "POST", read=True)  # minting another token is harmless
_REFRESH = _Op("refresh", "GET", read=True)
_CREATE_CART = _Op("create_cart", "POST", read=False, gated=True)
_GET_CART = _Op("get_cart", "GET", read=True)
_DELETE_CART = _Op("delete_cart", "DELETE", read=False)
_CUSTOMER = _Op("customer", "POST", read=False)
_SHIPPING_ADDRESS = _Op("shipping_address", "POST", read=False)
_BILLING_ADDRESS = _Op("billing_address", "POST", read=False)
_SHIPPING_AVAILABLE = _Op("shipping_available", "GET", read=True)
_SET_SHIPPING = _Op("set_shipping", "POST", read=False)
_PRICE = _Op("price", "GET", read=True)
_PAYMENT = _Op("payment", "POST", read=False, gated=True)
_PAYMENT_UPDATE = _Op("payment_update", "POST", read=False)
_SUBMIT = _Op("submit", "POST", read=False, gated=True)
_GET_ORDER = _Op("get_order", "GET", read=True)
_SEARCH_ORDERS = _Op("search_orders", "POST", read=True)
_CANCEL_ORDER = _Op("cancel_order", "POST", read=False)


class VioletSettings(Protocol):
    """The attributes of ``orchestrator.config.Settings`` the client needs (no import of it)."""

    @property
    def violet_base_url(self) -> str: ...
    @property
    def violet_app_id(self) -> int | None: ...
    @property
    def violet_app_secret(self) -> SecretStr | None: ...
    @property
    def violet_username(self) -> str | None: ...
    @property
    def violet_password(self) -> SecretStr | None: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def read_timeout(self) -> float: ...
    @property
    def total_timeout(self) -> float: ...
    @property
    def violet_max_response_bytes(self) -> int: ...


def _secret(value: SecretStr | str) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


#: The longest wait stamina's default backoff picks between inline retries (wait_max + jitter).
_MAX_BACKOFF_S = 6.0
#: The deadline of the Violet call this task is making (loop time), for its exchanges.
_CALL_DEADLINE: ContextVar[float | None] = ContextVar("violet_call_deadline", default=None)


class VioletClient:
    """Violet's checkout API as typed async methods; share one instance per process."""

    def __init__(
        self,
        *,
        base_url: str,
        app_id: int,
        app_secret: SecretStr | str,
        username: str,
        password: SecretStr | str,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        total_timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        read_retries: int = 3,
        max_connections: int = 100,
        http_shards: int | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._max_response_bytes = max_response_bytes
        self._username = username
        self._password = SecretStr(_secret(password))
        self._total_timeout = total_timeout
        self._read_retries = max(0, read_retries)
        # httpcore scans every pooled connection (a poll syscall each) on every request, so one
        # client with many connections slows down as concurrency grows: requests go round-robin
        # over a few smaller pools instead (an in-process transport needs only one).
        # The bench measured pools of 25 still spending 25% of a recovery's CPU in that scan;
        # pools of at most 8 connections keep it small (default: ceil(max_connections / 8)).
        if http_shards is None:
            http_shards = -(-max_connections // 8)
        shards = 1 if transport is not None else max(1, min(http_shards, max_connections))
        per_shard = max(1, max_connections // shards)
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        # Requests go straight to a transport, not through httpx.AsyncClient: Violet needs no
        # cookies, redirects or auth flows, and those layers cost a third of a call's CPU
        # (docs/performance.md). Proxies from the environment keep the full client path.
        self._transports: list[httpx.AsyncBaseTransport] = (
            [transport]
            if transport is not None
            else [httpx.AsyncHTTPTransport(limits=limits, http2=False) for _ in range(shards)]
        )
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
        self._headers: dict[str, str] = {
            "X-Violet-App-Id": str(app_id),
            "X-Violet-App-Secret": _secret(app_secret),
            "Accept": "application/json",
        }
        self._auth: TokenState | None = None
        self._refresh_token: SecretStr | None = None
        self._auth_lock = asyncio.Lock()
        # Masked wherever they appear from now on: logs, errors, the audit trail (sensitive.py).
        register_credential(app_secret)
        register_credential(password)

    @classmethod
    def from_settings(
        cls, settings: VioletSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> VioletClient:
        """Build from an ``orchestrator.config.Settings`` (or anything shaped like it)."""
        app_id = settings.violet_app_id
        app_secret = settings.violet_app_secret
        username = settings.violet_username
        password = settings.violet_password
        missing = [
            env
            for env, value in (
                ("VIOLET_APP_ID", app_id),
                ("VIOLET_APP_SECRET", app_secret),
                ("VIOLET_USERNAME", username),
                ("VIOLET_PASSWORD", password),
            )
            if value is None or value == ""
        ]
        if missing or app_id is None or app_secret is None or username is None or password is None:
            raise ConfigError(f"missing Violet credentials: set {', '.join(missing)}")
        return cls(
            base_url=settings.violet_base_url,
            app_id=app_id,
            app_secret=app_secret,
            username=username,
            password=password,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            total_timeout=settings.total_timeout,
            transport=transport,
            max_response_bytes=settings.violet_max_response_bytes,
        )

    def __repr__(self) -> str:
        return f"VioletClient(base_url={self._base_url!r}, username={self._username!r})"

    async def __aenter__(self) -> VioletClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def total_timeout(self) -> float:
        """The longest one call lasts, retries included: after it, no request of ours is sent."""
        return self._total_timeout

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()
        if self._proxied is not None:
            await self._proxied.aclose()

    # ------------------------------------------------------------ auth

    async def login(self) -> None:
        """Log in now (otherwise the first call does); raises VioletAuthError on bad credentials."""
        async with self._auth_lock:
            await self._login()

    async def _login(self) -> None:
        body = {"username": self._username, "password": self._password.get_secret_value()}
        response = await self._exchange(_LOGIN, "/login", body, None, None, secret_body=True)
        if not response.is_success:
            raise self._failure(_LOGIN, "/login", response, None)
        data = self._json(_LOGIN, "/login", response)
        token = data.get("token") if isinstance(data, dict) else None
        refresh = data.get("refresh_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise self._recorded(
                _LOGIN, "/login", response, VioletAuthError("login answer carried no token")
            )
        self._set_token(token)
        self._refresh_token = SecretStr(refresh) if isinstance(refresh, str) and refresh else None
        register_token(self._refresh_token)
        self._finish(_LOGIN, "/login", response, None, None, None)

    async def _refresh(self) -> None:
        assert self._refresh_token is not None
        headers = {"X-Violet-Token": self._refresh_token.get_secret_value()}
        response = await self._exchange(_REFRESH, "/auth/token", None, None, headers)
        if not response.is_success:
            raise self._failure(_REFRESH, "/auth/token", response, None)
        data = self._json(_REFRESH, "/auth/token", response)
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise self._recorded(
                _REFRESH,
                "/auth/token",
                response,
                VioletAuthError("refresh answer carried no token"),
            )
        self._set_token(token)
        self._finish(_REFRESH, "/auth/token", response, None, None, None)

    def _set_token(self, token: str) -> None:
        register_token(token)
        self._auth = TokenState.from_token(token)
        self._headers["X-Violet-Token"] = token

    async def _token(self, stale: str | None = None) -> str:
        """A usable token; single-flight: concurrent callers wait for one login or refresh.

        ``stale`` is the token Violet just refused: refresh unless someone already replaced it.
        """
        async with self._auth_lock:
            auth = self._auth
            if auth is not None:
                if stale is not None and auth.token != stale:
                    return auth.token
                if stale is None and not auth.needs_refresh():
                    return auth.token
            if self._refresh_token is not None and auth is not None:
                try:
                    await self._refresh()
                except (VioletAuthError, VioletPermanentError):
                    _log.info("violet token refresh refused; logging in again")
                except VioletError:
                    if stale is None and not auth.is_expired():
                        _log.warning("violet token refresh failed; current token still valid")
                        return auth.token
                    raise
                else:
                    assert self._auth is not None
                    return self._auth.token
            await self._login()
            assert self._auth is not None
            return self._auth.token

    # ------------------------------------------------------------ one HTTP exchange

    async def _exchange(
        self,
        op: _Op,
        path: str,
        body: Any,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
        *,
        secret_body: bool = False,
    ) -> httpx.Response:
        """Send once under the client's own deadline; transport failures become Violet errors."""
        start = time.perf_counter()
        extensions: dict[str, Any] = {"timeout": self._timeout}
        gate = current_gate() if op.gated else None
        if self._traced:
            trace = _trace_hook(gate, request_sent_hook(), op, path)
            if trace is not None:
                extensions["trace"] = trace
        request = httpx.Request(
            op.method,
            self._base_url + path,
            params=params,
            headers=self._headers if headers is None else {**self._headers, **headers},
            content=None if body is None else _encode_json(body),
            extensions=extensions,
        )
        if body is not None:
            request.headers["Content-Type"] = "application/json"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._total_timeout
        call_deadline = _CALL_DEADLINE.get()
        if call_deadline is not None and call_deadline < deadline:  # the call's deadline binds
            deadline = call_deadline
            if deadline <= loop.time():  # never send once the call's time is up
                err: VioletError = VioletRetryableError(
                    "the call's total timeout passed before this request was sent",
                    method=op.method,
                    path=path,
                    op=op.name,
                )
                self._finish_failed(op, path, start, None if secret_body else body, err)
                raise err
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
            err = self._too_large(op, path, too_large)
            self._finish_failed(
                op, path, start, None if secret_body else body, err, status=too_large.status
            )
            raise err from None
        except (httpx.RequestError, TimeoutError) as exc:
            err = error_from_transport(exc, op=op.name, method=op.method, path=path, read=op.read)
            self._finish_failed(op, path, start, None if secret_body else body, err)
            raise err from exc
        except VioletSendRefused as refused:  # by the gate: no byte of it was written
            self._finish_failed(op, path, start, None if secret_body else body, refused)
            raise
        except asyncio.CancelledError:
            self._finish_failed(op, path, start, None if secret_body else body, None)
            raise
        response.extensions["orchestrator_latency_ms"] = (time.perf_counter() - start) * 1000.0
        return response

    def _too_large(self, op: _Op, path: str, too_large: _AnswerTooLarge) -> VioletError:
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

    def _finish_failed(
        self,
        op: _Op,
        path: str,
        start: float,
        body: Any,
        err: VioletError | None,
        *,
        status: int | None = None,
    ) -> None:
        latency_ms = (time.perf_counter() - start) * 1000.0
        error = type(err).__name__ if err is not None else "CancelledError"
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "violet %s %s %s -> %s in %.1f ms", op.name, op.method, path, error, latency_ms
            )
        records = current_records()
        if records is not None:
            records.append(
                CallRecord(
                    op=op.name,
                    method=op.method,
                    path=path,
                    status=status,
                    latency_ms=latency_ms,
                    request=summarize_request(body),
                    response=None,
                    error=error,
                    request_id=None,
                )
            )

    def _finish(
        self,
        op: _Op,
        path: str,
        response: httpx.Response,
        body: Any,
        summary: dict[str, Any] | None,
        err: VioletError | None,
    ) -> None:
        """Log and (when someone captures) record one answered exchange."""
        latency_ms = float(response.extensions.get("orchestrator_latency_ms", 0.0))
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "violet %s %s %s -> %s in %.1f ms",
                op.name,
                op.method,
                path,
                response.status_code,
                latency_ms,
            )
        records = current_records()
        if records is not None:
            records.append(
                CallRecord(
                    op=op.name,
                    method=op.method,
                    path=path,
                    status=response.status_code,
                    latency_ms=latency_ms,
                    request=summarize_request(body),
                    response=summary,
                    error=type(err).__name__ if err is not None else None,
                    request_id=response.headers.get("x-request-id"),
                )
            )

    def _failure(self, op: _Op, path: str, response: httpx.Response, body: Any) -> VioletError:
        """Classify a non-2xx answer, record it, and return the exception to raise."""
        err = error_from_response(
            op=op.name,
            method=op.method,
            path=path,
            status=response.status_code,
            content=response.content,
            headers=response.headers,
            read=op.read,
        )
        self._finish(op, path, response, body, summarize_error_body(err.body), err)
        return err

    def _recorded(
        self, op: _Op, path: str, response: httpx.Response, err: VioletError
    ) -> VioletError:
        err.status = response.status_code
        err.method = op.method
        err.path = path
        err.op = op.name
        err.request_id = response.headers.get("x-request-id")
        self._finish(op, path, response, None, None, err)
        return err

    def _json(self, op: _Op, path: str, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._unreadable(op, path, response, None) from None

    def _unreadable(self, op: _Op, path: str, response: httpx.Response, body: Any) -> VioletError:
        # A write that answered 2xx was applied; only its answer is lost.
        cls = VioletPermanentError if op.read else VioletOutcomeUnknown
        err = cls(
            "unreadable answer from Violet",
            status=response.status_code,
            body=redact_excerpt(response.text, 200),
            method=op.method,
            path=path,
            op=op.name,
            request_id=response.headers.get("x-request-id"),
        )
        self._finish(op, path, response, body, None, err)
        return err

    # ------------------------------------------------------------ one call: auth + retries

    async def _call(
        self, op: _Op, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> httpx.Response:
        """A 2xx answer to one operation, or the classified error (reads retried transparently).

        No request of the call (login or refresh, retries) is sent, nor waited for, past the
        total timeout from the call's start: the runner's settle window for an unanswered submit
        or create_cart is built on it. (Cheaper than a timeout around the call: each exchange
        ends by the call's deadline, and none starts after it.)
        """
        token = _CALL_DEADLINE.set(asyncio.get_running_loop().time() + self._total_timeout)
        try:
            return await self._call_retrying(op, path, body, params)
        finally:
            _CALL_DEADLINE.reset(token)

    async def _call_retrying(
        self, op: _Op, path: str, body: Any, params: dict[str, str] | None
    ) -> httpx.Response:
        try:
            return await self._call_once(op, path, body, params)
        except VioletRetryableError as exc:
            if self._read_retries == 0 or self._retry_delay(op, exc) is False:
                raise
            first: VioletError | None = exc
        # Slow path: only now pay for a retry loop. The first failure is replayed inside it so
        # that stamina's backoff and attempt count include it.
        async for attempt in stamina.retry_context(
            on=lambda exc: self._retry_delay(op, exc),
            attempts=self._read_retries + 1,
            timeout=None,
            wait_initial=0.1,
            wait_max=5.0,
        ):
            with attempt:
                if first is not None:
                    pending, first = first, None
                    raise pending
                return await self._call_once(op, path, body, params)
        raise AssertionError("unreachable: stamina re-raises the last failure")

    def _retry_delay(self, op: _Op, exc: Exception) -> bool | float:
        """stamina hook: False = do not retry; True = default backoff; float = wait that long."""
        if not isinstance(exc, VioletRetryableError) or isinstance(exc, VioletSendRefused):
            return False  # a refused send would be refused again: the runner reconciles
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
        if isinstance(exc, VioletRateLimited) and exc.retry_after is not None:
            if exc.retry_after > MAX_INLINE_RETRY_AFTER or exc.retry_after >= left:
                return False  # this error (and its Retry-After) goes to the caller as it is
            return exc.retry_after
        if left < _MAX_BACKOFF_S:
            # stamina's next wait might outlast the call: wait within what is left instead.
            return min(1.0, left / 2)
        return True

    async def _call_once(
        self, op: _Op, path: str, body: Any, params: dict[str, str] | None
    ) -> httpx.Response:
        auth = self._auth
        token = auth.token if auth is not None and not auth.needs_refresh() else await self._token()
        response = await self._exchange(op, path, body, params, None)
        if response.status_code in (401, 403):
            # The token may have died early (revoked, clock skew): refresh once, then retry once.
            self._finish(op, path, response, body, None, None)
            await self._token(stale=token)
            response = await self._exchange(op, path, body, params, None)
        if not response.is_success:
            raise self._failure(op, path, response, body)
        return response

    # ------------------------------------------------------------ answers

    def _cart(
        self, op: _Op, path: str, response: httpx.Response, body: Any, *, check: bool
    ) -> Cart:
        """Parse a cart answer; with ``check``, blocking ``errors[]`` raise VioletCartErrors."""
        try:
            cart = Cart.model_validate_json(response.content)
        except ValidationError:
            raise self._unreadable(op, path, response, body) from None
        # A submit answer is an error only once Violet has refused it: not while a bag is
        # accepted, nor while the outcome is still pending (PROCESSING, bags SUBMITTED).
        if (
            check
            and cart.errors
            and not (op is _SUBMIT and (cart.accepted_bags or cart.outcome_pending))
        ):
            err = _cart_errors(cart, op, path, response)
            self._finish(op, path, response, body, summarize_cart(cart), err)
            raise err
        if current_records() is not None or _log.isEnabledFor(logging.DEBUG):
            self._finish(op, path, response, body, summarize_cart(cart), None)
        return cart

    def _parsed(
        self,
        op: _Op,
        path: str,
        response: httpx.Response,
        parse: Callable[[bytes], _T],
        summarize: Callable[[_T], dict[str, Any] | None],
    ) -> _T:
        try:
            value = parse(response.content)
        except ValidationError:
            raise self._unreadable(op, path, response, None) from None
        if current_records() is not None or _log.isEnabledFor(logging.DEBUG):
            self._finish(op, path, response, None, summarize(value), None)
        return value

    async def _cart_call(self, op: _Op, path: str, body: Any = None, *, check: bool = True) -> Cart:
        response = await self._call(op, path, body)
        return self._cart(op, path, response, body, check=check)

    # ------------------------------------------------------------ checkout API

    async def create_cart(
        self,
        *,
        skus: Sequence[SkuLine],
        app_order_id: str,
        currency: str = "USD",
        customer: Customer | None = None,
        wallet_based_checkout: bool = False,
    ) -> Cart:
        """Create a cart (never retried once sent: a second cart would be a duplicate)."""
        body: dict[str, Any] = {
            "base_currency": currency,
            "app_order_id": app_order_id,
            "skus": [{"sku_id": s.sku_id, "quantity": s.quantity} for s in skus],
            "wallet_based_checkout": wallet_based_checkout,
        }
        if customer is not None:
            body["customer"] = customer.model_dump(exclude_none=True)
        return await self._cart_call(_CREATE_CART, "/checkout/cart", body)

    async def get_cart(self, cart_id: int) -> Cart:
        """Read a cart or order; its ``errors[]`` are returned as data, never raised."""
        return await self._cart_call(_GET_CART, f"/checkout/cart/{cart_id}", check=False)

    async def apply_customer(self, cart_id: int, customer: Customer) -> Cart:
        body = customer.model_dump(exclude_none=True)
        return await self._cart_call(_CUSTOMER, f"/checkout/cart/{cart_id}/customer", body)

    async def set_shipping_address(self, cart_id: int, address: Address) -> Cart:
        body = address.model_dump(exclude_none=True)
        path = f"/checkout/cart/{cart_id}/shipping_address"
        return await self._cart_call(_SHIPPING_ADDRESS, path, body)

    async def set_billing_address(self, cart_id: int, address: Address) -> Cart:
        body = address.model_dump(exclude_none=True)
        path = f"/checkout/cart/{cart_id}/billing_address"
        return await self._cart_call(_BILLING_ADDRESS, path, body)

    async def get_available_shipping_methods(self, cart_id: int) -> list[BagShippingMethods]:
        path = f"/checkout/cart/{cart_id}/shipping/available"
        response = await self._call(_SHIPPING_AVAILABLE, path)
        return self._parsed(
            _SHIPPING_AVAILABLE, path, response, _SHIPPING_ADAPTER.validate_json, _summarize_methods
        )

    async def set_shipping_methods(
        self, cart_id: int, selections: Sequence[ShippingSelection]
    ) -> Cart:
        body = [
            {"bag_id": s.bag_id, "shipping_method_id": s.shipping_method_id} for s in selections
        ]
        return await self._cart_call(_SET_SHIPPING, f"/checkout/cart/{cart_id}/shipping", body)

    async def price_cart(self, cart_id: int) -> Cart:
        return await self._cart_call(_PRICE, f"/checkout/cart/{cart_id}/price")

    async def apply_payment(self, cart_id: int, payment: PaymentMethod) -> Cart:
        """Apply a card, token or payment intent (never retried once sent)."""
        return await self._cart_call(
            _PAYMENT, f"/checkout/cart/{cart_id}/payment", payment.to_body()
        )

    async def update_payment(self, cart_id: int) -> Cart:
        """Make Violet bring the Stripe payment intent up to date with the cart total."""
        return await self._cart_call(_PAYMENT_UPDATE, f"/checkout/cart/{cart_id}/payment/update")

    async def submit(self, cart_id: int, *, app_order_id: str | None = None) -> Cart:
        """Submit the cart. Raises VioletCartErrors only if it has errors, no bag was accepted and
        none is pending: a partly accepted multi-merchant cart, or an order still PROCESSING, is
        returned for the caller to record per bag."""
        body = {"app_order_id": app_order_id} if app_order_id is not None else {}
        return await self._cart_call(_SUBMIT, f"/checkout/cart/{cart_id}/submit", body)

    async def get_order(self, order_id: int) -> Cart:
        return await self._cart_call(_GET_ORDER, f"/orders/{order_id}", check=False)

    async def search_orders(
        self, *, app_order_id: str, exclude_in_progress: bool = False
    ) -> list[Cart]:
        """Carts and orders carrying our ``app_order_id`` (the reconcile probe for create_cart)."""
        path = "/orders/search"
        params = {"exclude_in_progress": "true" if exclude_in_progress else "false"}
        body = {"app_order_id": app_order_id}
        response = await self._call(_SEARCH_ORDERS, path, body, params)
        return self._parsed(_SEARCH_ORDERS, path, response, _parse_order_page, _summarize_orders)

    async def delete_cart(self, cart_id: int) -> None:
        path = f"/checkout/cart/{cart_id}"
        response = await self._call(_DELETE_CART, path)
        self._finish(_DELETE_CART, path, response, None, None, None)

    async def cancel_order(
        self, order_id: int, *, reason: str = "canceled by orchestrator"
    ) -> OrderCancellation:
        path = f"/orders/{order_id}/cancel"
        body = {"reason": reason}
        response = await self._call(_CANCEL_ORDER, path, body)
        return self._parsed(
            _CANCEL_ORDER, path, response, OrderCancellation.model_validate_json, _summarize_cancel
        )


# ---------------------------------------------------------------- helpers


class _AnswerTooLarge(OrchestratorError):
    """An answer longer than the client reads; what is known of it. It never leaves the client
    (`_send` turns it into a VioletError), but derives from the root like every error here."""

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


def _check_gate(gate: SendGate, op: _Op, path: str) -> None:
    refusal = gate.refusal()
    if refusal is not None:
        raise VioletSendRefused(refusal, method=op.method, path=path, op=op.name)


def _trace_hook(
    gate: SendGate | None, sent_hook: TraceHook | None, op: _Op, path: str
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


def _cart_errors(cart: Cart, op: _Op, path: str, response: httpx.Response) -> VioletCartErrors:
    first = cart.errors[0]
    detail = "; ".join(
        f"{e.type or 'UNKNOWN'}"
        + (f" (bag {e.bag_id})" if e.bag_id is not None else "")
        + (f": {scrub_text(e.message)}" if e.message else "")
        for e in cart.errors[:5]
    )
    return VioletCartErrors(
        f"cart {cart.id} has {len(cart.errors)} blocking error(s): {detail}",
        cart=cart,
        errors=cart.errors,
        status=response.status_code,
        body={"errors": summarize_cart(cart)["errors"]},
        method=op.method,
        path=path,
        op=op.name,
        request_id=response.headers.get("x-request-id"),
        error_type=first.type,
    )


def _parse_order_page(content: bytes) -> list[Cart]:
    if content.lstrip()[:1] == b"[":
        return _CART_LIST_ADAPTER.validate_json(content)
    return _OrderPage.model_validate_json(content).content


def _summarize_methods(value: list[BagShippingMethods]) -> dict[str, Any]:
    return {
        "bags": [
            {
                "bag_id": b.bag_id,
                "shipping_method_ids": [m.shipping_method_id for m in b.shipping_methods],
            }
            for b in value
        ]
    }


def _summarize_orders(value: list[Cart]) -> dict[str, Any]:
    return {"orders": [{"id": c.id, "status": c.status} for c in value]}


def _summarize_cancel(value: OrderCancellation) -> dict[str, Any]:
    return {"order_id": value.order_id, "status": value.status}
