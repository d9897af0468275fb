"""Async client for Violet's checkout API: one typed method per endpoint, and the shared JWT.

Each method builds its request, sends it through the transport (transport.py: pools, deadline,
send gate, size cap, the only inline retries), and reads the answer into a model or a classified
error (answers.py), every exchange recorded for the audit (calls.py). One instance holds one set
of connection pools and one JWT shared by every caller. It never repeats a call that may have
been applied; everything else is handed to the caller, who owns the durable retry and reconcile
logic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol, cast

import httpx
from pydantic import SecretStr

from orchestrator.errors import ConfigError
from orchestrator.sensitive import register_credential, register_token
from orchestrator.violet import ops
from orchestrator.violet.answers import (
    answer_error,
    failure,
    parse_order_page,
    parse_shipping_methods,
    read_cart,
    read_json,
    read_parsed,
)
from orchestrator.violet.auth import TokenState
from orchestrator.violet.calls import (
    record_answer,
    record_failure,
    summarize_cancel,
    summarize_methods,
    summarize_orders,
)
from orchestrator.violet.errors import VioletAuthError, VioletError, VioletPermanentError
from orchestrator.violet.models import (
    Address,
    BagShippingMethods,
    Cart,
    Customer,
    OrderCancellation,
    PaymentMethod,
    Refund,
    ShippingSelection,
    SkuLine,
)
from orchestrator.violet.ops import Op
from orchestrator.violet.redact import RedactingFilter
from orchestrator.violet.transport import DEFAULT_MAX_RESPONSE_BYTES, Transport

__all__ = ["VioletClient", "VioletSettings"]

_log = logging.getLogger(__name__)
_log.addFilter(RedactingFilter())


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


def _token_answer(op: Op, path: str, response: httpx.Response) -> dict[str, Any]:
    """A login or refresh answer, which must carry a token; anything else is raised, recorded."""
    if not response.is_success:
        raise failure(op, path, response, None)
    data = read_json(op, path, response)
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        err = VioletAuthError(f"{op.name} answer carried no token")
        raise answer_error(op, path, response, err)
    return cast("dict[str, Any]", data)


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
        response = await self._exchange(ops.LOGIN, "/login", body, None, None, secret_body=True)
        data = _token_answer(ops.LOGIN, "/login", response)
        refresh = data.get("refresh_token")
        self._set_token(data["token"])
        self._refresh_token = SecretStr(refresh) if isinstance(refresh, str) and refresh else None
        register_token(self._refresh_token)
        record_answer(ops.LOGIN, "/login", response, None, None, None)

    async def _refresh(self) -> None:
        assert self._refresh_token is not None
        headers = {"X-Violet-Token": self._refresh_token.get_secret_value()}
        response = await self._exchange(ops.REFRESH, "/auth/token", None, None, headers)
        data = _token_answer(ops.REFRESH, "/auth/token", response)
        self._set_token(data["token"])
        record_answer(ops.REFRESH, "/auth/token", response, None, None, None)

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
            raise failure(op, path, response, body)
        return response

    async def _cart_call(self, op: Op, path: str, body: Any = None, *, check: bool = True) -> Cart:
        response = await self._call(op, path, body)
        return read_cart(op, path, response, body, check=check)

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
        return await self._cart_call(ops.CREATE_CART, "/checkout/cart", body)

    async def get_cart(self, cart_id: int) -> Cart:
        """Read a cart or order; its ``errors[]`` are returned as data, never raised."""
        return await self._cart_call(ops.GET_CART, f"/checkout/cart/{cart_id}", check=False)

    async def apply_customer(self, cart_id: int, customer: Customer) -> Cart:
        body = customer.model_dump(exclude_none=True)
        return await self._cart_call(ops.CUSTOMER, f"/checkout/cart/{cart_id}/customer", body)

    async def set_shipping_address(self, cart_id: int, address: Address) -> Cart:
        body = address.model_dump(exclude_none=True)
        path = f"/checkout/cart/{cart_id}/shipping_address"
        return await self._cart_call(ops.SHIPPING_ADDRESS, path, body)

    async def set_billing_address(self, cart_id: int, address: Address) -> Cart:
        body = address.model_dump(exclude_none=True)
        path = f"/checkout/cart/{cart_id}/billing_address"
        return await self._cart_call(ops.BILLING_ADDRESS, path, body)

    async def get_available_shipping_methods(self, cart_id: int) -> list[BagShippingMethods]:
        path = f"/checkout/cart/{cart_id}/shipping/available"
        response = await self._call(ops.SHIPPING_AVAILABLE, path)
        return read_parsed(
            ops.SHIPPING_AVAILABLE, path, response, parse_shipping_methods, summarize_methods
        )

    async def set_shipping_methods(
        self, cart_id: int, selections: Sequence[ShippingSelection]
    ) -> Cart:
        body = [
            {"bag_id": s.bag_id, "shipping_method_id": s.shipping_method_id} for s in selections
        ]
        return await self._cart_call(ops.SET_SHIPPING, f"/checkout/cart/{cart_id}/shipping", body)

    async def price_cart(self, cart_id: int) -> Cart:
        return await self._cart_call(ops.PRICE, f"/checkout/cart/{cart_id}/price")

    async def apply_payment(self, cart_id: int, payment: PaymentMethod) -> Cart:
        """Apply a card, token or payment intent (never retried once sent)."""
        return await self._cart_call(
            ops.PAYMENT, f"/checkout/cart/{cart_id}/payment", payment.to_body()
        )

    async def update_payment(self, cart_id: int) -> Cart:
        """Make Violet bring the Stripe payment intent up to date with the cart total."""
        return await self._cart_call(ops.PAYMENT_UPDATE, f"/checkout/cart/{cart_id}/payment/update")

    async def submit(self, cart_id: int, *, app_order_id: str | None = None) -> Cart:
        """Submit the cart. Raises VioletCartErrors only if it has errors, no bag was accepted and
        none is pending: a partly accepted multi-merchant cart, or an order still PROCESSING, is
        returned for the caller to record per bag."""
        body = {"app_order_id": app_order_id} if app_order_id is not None else {}
        return await self._cart_call(ops.SUBMIT, f"/checkout/cart/{cart_id}/submit", body)

    async def get_order(self, order_id: int) -> Cart:
        return await self._cart_call(ops.GET_ORDER, f"/orders/{order_id}", check=False)

    async def search_orders(
        self, *, app_order_id: str, exclude_in_progress: bool = False
    ) -> list[Cart]:
        """Carts and orders carrying our ``app_order_id`` (the reconcile probe for create_cart)."""
        path = "/orders/search"
        params = {"exclude_in_progress": "true" if exclude_in_progress else "false"}
        body = {"app_order_id": app_order_id}
        response = await self._call(ops.SEARCH_ORDERS, path, body, params)
        return read_parsed(ops.SEARCH_ORDERS, path, response, parse_order_page, summarize_orders)

    async def delete_cart(self, cart_id: int) -> None:
        path = f"/checkout/cart/{cart_id}"
        response = await self._call(ops.DELETE_CART, path)
        record_answer(ops.DELETE_CART, path, response, None, None, None)

    async def cancel_order(
        self, order_id: int, *, reason: str = "canceled by orchestrator"
    ) -> OrderCancellation:
        path = f"/orders/{order_id}/cancel"
        body = {"reason": reason}
        response = await self._call(ops.CANCEL_ORDER, path, body)
        return read_parsed(
            ops.CANCEL_ORDER,
            path,
            response,
            OrderCancellation.model_validate_json,
            summarize_cancel,
        )

    async def cancel_bag(
        self,
        order_id: int,
        bag_id: int,
        *,
        reason: str | None = None,
        reason_code: str | None = None,
    ) -> OrderCancellation:
        """Ask Violet to cancel one bag of a submitted order (never retried once sent: Violet
        answers 202 whether it worked or not, so the answer is a claim a read must confirm)."""
        path = f"/orders/{order_id}/bags/{bag_id}/cancel"
        body: dict[str, Any] = {}
        if reason is not None:
            body["reason"] = reason
        if reason_code is not None:
            body["reason_code"] = reason_code
        response = await self._call(ops.CANCEL_BAG, path, body)
        return read_parsed(
            ops.CANCEL_BAG,
            path,
            response,
            OrderCancellation.model_validate_json,
            summarize_cancel,
        )

    async def refund_bag(
        self,
        order_id: int,
        bag_id: int,
        *,
        amount: int | None = None,
        skus: Sequence[SkuLine] | None = None,
        reason: str | None = None,
    ) -> Refund:
        """Ask Violet to refund a bag: `amount` minor units, the given `skus`, or (neither) all
        that is left. Never retried once sent: a second request is a second refund."""
        path = f"/orders/{order_id}/bags/{bag_id}/refunds"
        body: dict[str, Any] = {}
        if amount is not None:
            body["amount"] = amount
        if skus is not None:
            body["skus"] = [{"sku_id": s.sku_id, "quantity": s.quantity} for s in skus]
        if reason is not None:
            body["reason"] = reason
        response = await self._call(ops.REFUND_BAG, path, body)
        return read_parsed(
            ops.REFUND_BAG, path, response, Refund.model_validate_json, _summarize_refund
        )


def _summarize_refund(value: Refund) -> dict[str, Any]:
    """What the audit keeps of a refund answer: its id, amount and status."""
    return {"id": value.id, "bag_id": value.bag_id, "amount": value.amount, "status": value.status}
