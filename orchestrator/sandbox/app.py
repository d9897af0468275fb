"""The ASGI app: Violet's /v1 surface plus the /_sandbox control surface.

Every /v1 call goes through one pipeline: base latency, armed faults, authentication, the
operation itself (synchronous, so atomic), the call log. Faults act around the operation so a
test can choose whether the change was applied before the connection failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from orchestrator.sandbox import acting, carts, orders, payments
from orchestrator.sandbox.buckets import merchants_of
from orchestrator.sandbox.carts import Call, Result
from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.control import control_routes
from orchestrator.sandbox.errors import AuthError, DropConnection, SandboxError, rate_limited
from orchestrator.sandbox.faults import (
    CART_ERROR,
    DELAY_AFTER_APPLY,
    DROP_AFTER_APPLY,
    DROP_BEFORE_APPLY,
    ERROR,
    HUGE_ANSWER,
    LATENCY,
    RATE_LIMIT,
    SILENT_FAILURE,
    TIMEOUT,
    Fault,
)
from orchestrator.sandbox.state import SandboxState
from orchestrator.sandbox.validation import MISSING

logger = logging.getLogger(__name__)

Operation = Callable[[SandboxState, Call], Result]

_NO_BODY_METHODS = frozenset({"GET", "DELETE", "HEAD"})
CLIENT_GONE = 499
"""Logged status of a call whose client hung up during a ``timeout`` fault (nginx's code)."""


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    if status == 204 or payload is None:
        return Response(status_code=status, headers=headers)
    content = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(content, status_code=status, headers=headers, media_type="application/json")


class DroppedResponse(Response):
    """Sends the status line and headers, then dies: the client sees a truncated response."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        raise DropConnection()


_PADDING = b" " * 65536


def huge_answer(response: Response, size: int, entry: dict[str, Any]) -> Response:
    """The real answer followed by whitespace up to `size` bytes (still valid JSON), streamed
    without a Content-Length: a client that reads whole answers holds all of it. The call log
    entry counts the bytes handed to the server (`streamed_bytes`, `stream_done` once over)."""
    body = bytes(response.body)

    async def chunks() -> AsyncIterator[bytes]:
        entry["streamed_bytes"] = 0
        try:
            yield body
            entry["streamed_bytes"] = sent = len(body)
            while sent < size:
                piece = _PADDING[: size - sent]
                yield piece
                sent += len(piece)
                entry["streamed_bytes"] = sent
                # A server drops sends once the client hung up, without suspending: let the
                # response notice the disconnect instead of spinning through the rest.
                await asyncio.sleep(0)
        finally:
            entry["stream_done"] = True

    return StreamingResponse(
        chunks(), status_code=response.status_code, media_type="application/json"
    )


def _login(state: SandboxState, call: Call) -> Result:
    return 200, state.auth.login(call.headers, call.body)


def _refresh(state: SandboxState, call: Call) -> Result:
    return 200, state.auth.refresh(call.headers)


def _parse_body(raw: bytes) -> Any:
    if not raw.strip():
        return MISSING
    try:
        return json.loads(raw)
    except ValueError:
        raise SandboxError(400, "invalid_request_body", "request body is not valid JSON") from None


async def _sleep_unless_gone(request: Request, delay_ms: float) -> bool:
    """Hang like an overloaded server; True as soon as the client has given up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay_ms / 1000
    while True:
        if await request.is_disconnected():
            return True
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(remaining, 0.05))


def _fault_response(fault: Fault) -> Response:
    if fault.kind == RATE_LIMIT:
        retry_after = fault.retry_after
        if retry_after is not None and not isinstance(retry_after, str):
            retry_after = f"{retry_after:g}"
        refused = rate_limited(fault.status, retry_after)
        return json_response(refused.status, refused.body(), refused.headers)
    if fault.content_type is not None and fault.message is not None:  # e.g. a proxy's HTML page
        return Response(fault.message, status_code=fault.status, media_type=fault.content_type)
    body = {
        "code": fault.status,
        "error": "service_unavailable" if fault.status == 503 else "server_error",
        "message": fault.message or f"injected fault: HTTP {fault.status}",
    }
    return json_response(fault.status, body)


def _with_cart_error(payload: Any, fault: Fault) -> Any:
    """An order answer with one more errors[] entry carrying the fault's message (Violet reports
    bag-level problems with HTTP 200); other answers are left as they are."""
    if not isinstance(payload, dict) or not isinstance(payload.get("errors"), list):
        return payload
    bags = payload.get("bags") or [{}]
    entry = {
        "id": 999_000 + fault.id,
        "order_id": payload.get("id"),
        "bag_id": bags[0].get("id"),
        "type": "EXTERNAL_ERROR",
        "message": fault.message,
        "entity_type": "BAG",
    }
    return {**payload, "errors": [*payload["errors"], entry]}


def _take_from_buckets(
    state: SandboxState,
    op: str,
    cart_id: int | None,
    bag_id: int | None,
    body: Any,
    entry: dict[str, Any],
) -> None:
    """One request into the bucket of every merchant the call reaches, or a 429 before the
    operation runs (so it applies nothing), after auth as at Violet."""
    full = state.buckets.admit(merchants_of(state, op, cart_id, bag_id, body))
    if full:
        entry["throttled_by"] = full
        raise state.buckets.refusal(full)


class _Pipeline:
    """Runs one /v1 operation with latency, faults, auth and logging around it."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def endpoint(
        self, op: str, operation: Operation, *, authenticated: bool = True
    ) -> Callable[[Request], Any]:
        state = self.state

        async def handle(request: Request) -> Response:
            started = time.time()
            state.calls_by_op[op] += 1
            entry: dict[str, Any] = {
                "op": op,
                "method": request.method,
                "path": request.url.path,
                "status": None,
                "cart_id": None,
                "at": started,
                "fault": None,
            }
            try:
                response = await self._run(request, op, operation, authenticated, entry)
                if not isinstance(response, DroppedResponse):
                    entry["status"] = response.status_code
                return response
            finally:
                state.calls.append(entry)

        return handle

    async def _run(
        self,
        request: Request,
        op: str,
        operation: Operation,
        authenticated: bool,
        entry: dict[str, Any],
    ) -> Response:
        state = self.state
        raw_id = request.path_params.get("id")
        path_id: int | None = None
        if raw_id is not None:
            try:
                path_id = int(raw_id)
            except ValueError:
                return json_response(
                    400,
                    SandboxError(400, "invalid_parameter", "id must be an integer").body(),
                )
            entry["cart_id"] = path_id
        bag_id: int | None = None
        if "bag_id" in request.path_params:
            try:
                bag_id = int(request.path_params["bag_id"])
            except ValueError:
                return json_response(
                    400,
                    SandboxError(400, "invalid_parameter", "bag_id must be an integer").body(),
                )

        raw_body = b"" if request.method in _NO_BODY_METHODS else await request.body()
        delay_ms = state.config.latency_ms
        if state.config.latency_jitter_ms > 0:
            jitter = state.config.latency_jitter_ms
            delay_ms = max(0.0, delay_ms + state.rng.uniform(-jitter, jitter))
        fault: Fault | None = None
        if state.faults.faults:
            extra_ms, fault = state.faults.draw(op)
            delay_ms += extra_ms
            if extra_ms > 0:
                entry["fault"] = LATENCY
                state.faults_fired[LATENCY] += 1
            if fault is not None:
                entry["fault"] = fault.kind
                state.faults_fired[fault.kind] += 1
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)

        if fault is not None:
            if fault.kind in (ERROR, RATE_LIMIT):
                return _fault_response(fault)
            if fault.kind == DROP_BEFORE_APPLY:
                return DroppedResponse()
            if fault.kind == TIMEOUT and await _sleep_unless_gone(request, fault.latency_ms):
                entry["status"] = CLIENT_GONE
                return Response(status_code=CLIENT_GONE)

        try:
            body = _parse_body(raw_body)
            if authenticated:
                state.auth.verify(request.headers)
            if state.buckets.enabled:
                _take_from_buckets(state, op, path_id, bag_id, body, entry)
            call = Call(
                op,
                path_id,
                request.query_params,
                body,
                request.headers,
                bag_id=bag_id,
                silent_failure=fault is not None and fault.kind == SILENT_FAILURE,
            )
            if state.processing:
                orders.settle_due(state)
            status, payload = operation(state, call)
            if op == "create_cart" and isinstance(payload, dict):
                entry["cart_id"] = payload.get("id")
            if fault is not None and fault.kind == CART_ERROR:
                payload = _with_cart_error(payload, fault)
            response = json_response(status, payload)
        except SandboxError as exc:
            response = json_response(exc.status, exc.body(), exc.headers)
        except AuthError as exc:
            response = json_response(exc.status, exc.body())

        if fault is not None:
            if fault.kind == DROP_AFTER_APPLY:
                return DroppedResponse()
            if fault.kind == DELAY_AFTER_APPLY:
                await asyncio.sleep(fault.latency_ms / 1000)
            if fault.kind == HUGE_ANSWER:
                return huge_answer(response, fault.size_bytes, entry)
        return response


_V1: tuple[tuple[str, str, str, Operation, bool], ...] = (
    ("POST", "/v1/login", "login", _login, False),
    ("GET", "/v1/auth/token", "refresh", _refresh, False),
    ("POST", "/v1/checkout/cart", "create_cart", carts.create_cart, True),
    ("GET", "/v1/checkout/cart/{id}", "get_cart", carts.get_cart, True),
    ("DELETE", "/v1/checkout/cart/{id}", "delete_cart", carts.delete_cart, True),
    ("POST", "/v1/checkout/cart/{id}/customer", "customer", carts.apply_customer, True),
    ("POST", "/v1/checkout/cart/{id}/shipping_address", "shipping_address",
     carts.set_shipping_address, True),
    ("PUT", "/v1/checkout/cart/{id}/shipping_address", "shipping_address",
     carts.set_shipping_address, True),
    ("POST", "/v1/checkout/cart/{id}/billing_address", "billing_address",
     carts.set_billing_address, True),
    ("PUT", "/v1/checkout/cart/{id}/billing_address", "billing_address",
     carts.set_billing_address, True),
    ("GET", "/v1/checkout/cart/{id}/shipping/available", "shipping_available",
     carts.shipping_available, True),
    ("POST", "/v1/checkout/cart/{id}/shipping", "set_shipping", carts.set_shipping, True),
    ("GET", "/v1/checkout/cart/{id}/price", "price", carts.price_cart, True),
    ("POST", "/v1/checkout/cart/{id}/payment", "payment", payments.apply_payment, True),
    ("POST", "/v1/checkout/cart/{id}/payment/update", "payment_update",
     payments.update_payment, True),
    ("POST", "/v1/checkout/cart/{id}/submit", "submit", orders.submit, True),
    ("GET", "/v1/orders/{id}", "get_order", orders.get_order, True),
    ("POST", "/v1/orders/search", "search_orders", orders.search_orders, True),
    ("POST", "/v1/orders/{id}/cancel", "cancel_order", acting.cancel_order, True),
    ("POST", "/v1/orders/{id}/bags/{bag_id}/cancel", "cancel_bag", acting.cancel_bag, True),
    ("POST", "/v1/orders/{id}/bags/{bag_id}/refunds", "refund_bag", acting.refund_bag, True),
    ("GET", "/v1/orders/{id}/bags/{bag_id}", "get_bag", acting.get_bag, True),
    ("GET", "/v1/orders/{id}/refunds", "get_refunds", acting.get_refunds, True),
    ("GET", "/v1/orders/{id}/bags/{bag_id}/refunds", "get_refunds", acting.get_refunds, True),
)  # fmt: skip


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    error = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    message = f"no such endpoint: {request.method} {request.url.path}"
    return json_response(status, {"code": status, "error": error, "message": message})


def create_app(config: SandboxConfig | None = None, *, control: bool = True) -> Starlette:
    """A fresh sandbox with its own state; ``app.state.sandbox`` is that state (for tests).

    ``control=False`` leaves out the unauthenticated /_sandbox surface (404), for a sandbox that
    other hosts can reach.
    """
    state = SandboxState(config)
    pipeline = _Pipeline(state)
    routes = [
        Route(path, pipeline.endpoint(op, operation, authenticated=auth), methods=[method])
        for method, path, op, operation, auth in _V1
    ]
    if control:
        routes.extend(control_routes(state))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.sandbox = state
    logger.debug("sandbox app created: %r", state.config)
    return app
