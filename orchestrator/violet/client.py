"""Async client for Violet's checkout API: auth, classification, safe retries, audit capture.

One instance holds one pooled ``httpx.AsyncClient`` and one JWT shared by every caller. It never
repeats a call that may have been applied (only reads, and requests that provably never left the
process, are retried here); everything else is classified and handed to the caller, who owns the
durable retry and reconcile logic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, TypeVar

import httpx
from pydantic import SecretStr, TypeAdapter, ValidationError

from orchestrator.errors import ConfigError
from orchestrator.sensitive import redact_excerpt, register_credential, register_token
from orchestrator.violet.auth import TokenState
from orchestrator.violet.calls import (
    record_answer,
    record_failure,
    recording,
    summarize_cancel,
    summarize_cart,
    summarize_error_body,
    summarize_methods,
    summarize_orders,
)
from orchestrator.violet.errors import (
    VioletAuthError,
    VioletCartErrors,
    VioletError,
    VioletOutcomeUnknown,
    VioletPermanentError,
    error_from_response,
)
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
from orchestrator.violet.transport import DEFAULT_MAX_RESPONSE_BYTES, Op, Transport

__all__ = ["VioletClient", "VioletSettings"]

_log = logging.getLogger(__name__)
_log.addFilter(RedactingFilter())

_T = TypeVar("_T")

_SHIPPING_ADAPTER: Final = TypeAdapter(list[BagShippingMethods])
_CART_LIST_ADAPTER: Final = TypeAdapter(list[Cart])


_LOGIN = Op("login", "POST", read=True)  # minting another token is harmless
_REFRESH = Op("refresh", "GET", read=True)
_CREATE_CART = Op("create_cart", "POST", read=False, gated=True)
_GET_CART = Op("get_cart", "GET", read=True)
_DELETE_CART = Op("delete_cart", "DELETE", read=False)
_CUSTOMER = Op("customer", "POST", read=False)
_SHIPPING_ADDRESS = Op("shipping_address", "POST", read=False)
_BILLING_ADDRESS = Op("billing_address", "POST", read=False)
_SHIPPING_AVAILABLE = Op("shipping_available", "GET", read=True)
_SET_SHIPPING = Op("set_shipping", "POST", read=False)
_PRICE = Op("price", "GET", read=True)
_PAYMENT = Op("payment", "POST", read=False, gated=True)
_PAYMENT_UPDATE = Op("payment_update", "POST", read=False)
_SUBMIT = Op("submit", "POST", read=False, gated=True)
_GET_ORDER = Op("get_order", "GET", read=True)
_SEARCH_ORDERS = Op("search_orders", "POST", read=True)
_CANCEL_ORDER = Op("cancel_order", "POST", read=False)


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
        self._username = username
        self._password = SecretStr(_secret(password))
        self._transport = Transport(
            base_url=base_url,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            total_timeout=total_timeout,
            transport=transport,
            read_retries=read_retries,
            max_connections=max_connections,
            http_shards=http_shards,
            max_response_bytes=max_response_bytes,
        )
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
        return f"VioletClient(base_url={self._transport.base_url!r}, username={self._username!r})"

    async def __aenter__(self) -> VioletClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def total_timeout(self) -> float:
        """The longest one call lasts, retries included: after it, no request of ours is sent."""
        return self._transport.total_timeout

    async def aclose(self) -> None:
        await self._transport.aclose()

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
        record_answer(_LOGIN, "/login", response, None, None, None)

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
        record_answer(_REFRESH, "/auth/token", response, None, None, None)

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
        op: Op,
        path: str,
        body: Any,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
        *,
        secret_body: bool = False,
    ) -> httpx.Response:
        """Send one request through the transport; an exchange that brought no answer is recorded
        here (without the body when it is secret), an answered one once its answer is read."""
        start = time.perf_counter()
        sent_headers = self._headers if headers is None else {**self._headers, **headers}
        try:
            response = await self._transport.send(op, path, body, params, sent_headers)
        except (VioletError, asyncio.CancelledError) as exc:
            err = exc if isinstance(exc, VioletError) else None
            record_failure(op, path, start, None if secret_body else body, err)
            raise
        response.extensions["orchestrator_latency_ms"] = (time.perf_counter() - start) * 1000.0
        return response

    def _failure(self, op: Op, path: str, response: httpx.Response, body: Any) -> VioletError:
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
        record_answer(op, path, response, body, summarize_error_body(err.body), err)
        return err

    def _recorded(
        self, op: Op, path: str, response: httpx.Response, err: VioletError
    ) -> VioletError:
        err.status = response.status_code
        err.method = op.method
        err.path = path
        err.op = op.name
        err.request_id = response.headers.get("x-request-id")
        record_answer(op, path, response, None, None, err)
        return err

    def _json(self, op: Op, path: str, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._unreadable(op, path, response, None) from None

    def _unreadable(self, op: Op, path: str, response: httpx.Response, body: Any) -> VioletError:
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
        record_answer(op, path, response, body, None, err)
        return err

    # ------------------------------------------------------------ one call: auth + retries

    async def _call(
        self, op: Op, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> httpx.Response:
        """A 2xx answer to one operation, or the classified error (reads retried transparently,
        the whole call bounded by the total timeout: `Transport.call`)."""
        return await self._transport.call(op, lambda: self._call_once(op, path, body, params))

    async def _call_once(
        self, op: Op, path: str, body: Any, params: dict[str, str] | None
    ) -> httpx.Response:
        auth = self._auth
        token = auth.token if auth is not None and not auth.needs_refresh() else await self._token()
        response = await self._exchange(op, path, body, params, None)
        if response.status_code in (401, 403):
            # The token may have died early (revoked, clock skew): refresh once, then retry once.
            record_answer(op, path, response, body, None, None)
            await self._token(stale=token)
            response = await self._exchange(op, path, body, params, None)
        if not response.is_success:
            raise self._failure(op, path, response, body)
        return response

    # ------------------------------------------------------------ answers

    def _cart(self, op: Op, path: str, response: httpx.Response, body: Any, *, check: bool) -> Cart:
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
            record_answer(op, path, response, body, summarize_cart(cart), err)
            raise err
        if recording():
            record_answer(op, path, response, body, summarize_cart(cart), None)
        return cart

    def _parsed(
        self,
        op: Op,
        path: str,
        response: httpx.Response,
        parse: Callable[[bytes], _T],
        summarize: Callable[[_T], dict[str, Any] | None],
    ) -> _T:
        try:
            value = parse(response.content)
        except ValidationError:
            raise self._unreadable(op, path, response, None) from None
        if recording():
            record_answer(op, path, response, None, summarize(value), None)
        return value

    async def _cart_call(self, op: Op, path: str, body: Any = None, *, check: bool = True) -> Cart:
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
            _SHIPPING_AVAILABLE, path, response, _SHIPPING_ADAPTER.validate_json, summarize_methods
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
        return self._parsed(_SEARCH_ORDERS, path, response, _parse_order_page, summarize_orders)

    async def delete_cart(self, cart_id: int) -> None:
        path = f"/checkout/cart/{cart_id}"
        response = await self._call(_DELETE_CART, path)
        record_answer(_DELETE_CART, path, response, None, None, None)

    async def cancel_order(
        self, order_id: int, *, reason: str = "canceled by orchestrator"
    ) -> OrderCancellation:
        path = f"/orders/{order_id}/cancel"
        body = {"reason": reason}
        response = await self._call(_CANCEL_ORDER, path, body)
        return self._parsed(
            _CANCEL_ORDER, path, response, OrderCancellation.model_validate_json, summarize_cancel
        )


# ---------------------------------------------------------------- helpers


def _cart_errors(cart: Cart, op: Op, path: str, response: httpx.Response) -> VioletCartErrors:
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
