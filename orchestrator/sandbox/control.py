"""The /_sandbox control surface: reset, runtime config, faults, shopper actions, observation.

Unauthenticated on purpose: it is how tests and benchmarks steer and inspect the sandbox,
never part of Violet's API.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.sandbox.buckets import MerchantBuckets, configured_defaults, parse_settings
from orchestrator.sandbox.carts import load_cart
from orchestrator.sandbox.control_hooks import after_submit_routes
from orchestrator.sandbox.declines import SHAPES, STEPS
from orchestrator.sandbox.errors import SandboxError
from orchestrator.sandbox.model import Cart
from orchestrator.sandbox.orders import settle_due
from orchestrator.sandbox.payments import confirm_payment
from orchestrator.sandbox.state import SandboxState

Handler = Callable[[Request], Awaitable[Any]]

_NUMBERS = (
    "latency_ms",
    "latency_jitter_ms",
    "token_ttl_seconds",
    "processing_ms",
    "webhook_time_scale",
    "webhook_timeout_seconds",
)
_NON_NEGATIVE = ("latency_ms", "latency_jitter_ms", "processing_ms", "webhook_time_scale")
_POSITIVE = ("webhook_timeout_seconds",)
CANCELED_EVENTS = ("ORDER_CANCELED", "ORDER_CANCELLED")


def _guard(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            result = await handler(request)
        except SandboxError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        if isinstance(result, Response):
            return result
        return JSONResponse(result)

    return endpoint


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise SandboxError(400, "invalid_request_body", "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise SandboxError(400, "invalid_request_body", "request body must be a JSON object")
    return data


def _cart_id(request: Request) -> int:
    try:
        return int(request.path_params["id"])
    except ValueError:
        raise SandboxError(400, "invalid_parameter", "id must be an integer") from None


def internal_view(state: SandboxState, cart: Cart) -> dict[str, Any]:
    """What a test needs to see of a cart, including things Violet would not show."""
    payment = cart.payment
    intent = cart.intent
    return {
        "id": cart.id,
        "status": cart.status,
        "deleted": cart.deleted,
        "app_order_id": cart.app_order_id,
        "currency": cart.currency,
        "priced": cart.priced,
        "total": cart.total,
        "has_customer": cart.customer is not None,
        "has_shipping_address": cart.shipping_address is not None,
        "has_billing_address": cart.billing_address is not None,
        "payment": None
        if payment is None
        else {
            "kind": payment.kind,
            "brand": payment.brand,
            "last_four": payment.last_four,
            "outcome": payment.outcome.value,
        },
        "intent": None
        if intent is None
        else {
            "id": intent.id,
            "amount": intent.amount,
            "confirmed": intent.confirmed,
            "capture_status": intent.capture_status,
            "three_ds": intent.three_ds,
        },
        "action_confirmed": cart.action_confirmed,
        "bags": [
            {
                "id": bag.id,
                "merchant_id": bag.merchant.id,
                "status": bag.status,
                "financial_status": bag.financial_status,
                "needs_shipping": bag.needs_shipping,
                "shipping_method_id": (bag.shipping_method or {}).get("shipping_method_id"),
                "tax_total": bag.tax_total,
                "skus": [
                    {"order_sku_id": s.id, "sku_id": s.sku.id, "quantity": s.quantity,
                     "available": s.available}
                    for s in bag.skus
                ],
            }
            for bag in cart.bags
        ],
        "errors": list(cart.errors),
        "pending_errors": list(cart.pending_errors),
        "submits": state.submits.get(cart.id, 0),
        "duplicate_submits": state.duplicate_submits.get(cart.id, 0),
    }  # fmt: skip


def control_routes(state: SandboxState) -> list[Route]:
    async def reset(request: Request) -> Any:
        state.reset()
        return {"reset": True}

    async def get_config(request: Request) -> Any:
        config = state.config
        return {
            "app_id": config.app_id,
            "latency_ms": config.latency_ms,
            "latency_jitter_ms": config.latency_jitter_ms,
            "token_ttl_seconds": config.token_ttl_seconds,
            "processing_ms": config.processing_ms,
            "decline_shape": config.decline_shape,
            "decline_step": config.decline_step,
            "seed": config.seed,
            "webhook_time_scale": config.webhook_time_scale,
            "webhook_timeout_seconds": config.webhook_timeout_seconds,
            "canceled_event": config.canceled_event,
        }

    async def set_config(request: Request) -> Any:
        data = await _json_object(request)
        for key in _NUMBERS:
            if key not in data:
                continue
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SandboxError(400, "invalid_field", f"{key} must be a number")
            if key in _NON_NEGATIVE and value < 0:
                raise SandboxError(400, "invalid_field", f"{key} must be >= 0")
            if key in _POSITIVE and value <= 0:
                raise SandboxError(400, "invalid_field", f"{key} must be > 0")
            setattr(state.config, key, float(value))
        for key, allowed in (
            ("decline_shape", SHAPES),
            ("decline_step", STEPS),
            ("canceled_event", CANCELED_EVENTS),
        ):
            if key not in data:
                continue
            if data[key] not in allowed:
                raise SandboxError(
                    400, "invalid_field", f"{key} must be one of {', '.join(allowed)}"
                )
            setattr(state.config, key, data[key])
        return await get_config(request)

    async def add_fault(request: Request) -> Any:
        return {"id": state.faults.add(await _json_object(request)).id}

    async def list_faults(request: Request) -> Any:
        return [f.to_json() for f in state.faults.faults]

    async def clear_faults(request: Request) -> Any:
        state.faults.clear()
        return {"cleared": True}

    async def confirm(request: Request) -> Any:
        settle_due(state)
        cart = load_cart(state, _cart_id(request))
        confirm_payment(state, cart)
        return internal_view(state, cart)

    async def calls(request: Request) -> Any:
        op = request.query_params.get("op")
        raw_cart_id = request.query_params.get("cart_id")
        try:
            cart_id = int(raw_cart_id) if raw_cart_id else None
        except ValueError:
            raise SandboxError(400, "invalid_parameter", "cart_id must be an integer") from None
        return [
            c
            for c in state.calls
            if (op is None or c["op"] == op) and (cart_id is None or c["cart_id"] == cart_id)
        ]

    async def stats(request: Request) -> Any:
        settle_due(state)
        return state.stats()

    async def cart(request: Request) -> Any:
        settle_due(state)
        cart_id = _cart_id(request)
        found = state.carts.get(cart_id)
        if found is None:
            raise SandboxError(404, "cart_not_found", f"cart {cart_id} not found")
        return internal_view(state, found)

    async def expire_tokens(request: Request) -> Any:
        return {"expired_through": state.auth.expire_all()}

    async def revoke_refresh_tokens(request: Request) -> Any:
        data = await _json_object(request)
        token = data.get("refresh_token")
        if token is not None and not isinstance(token, str):
            raise SandboxError(400, "invalid_field", "refresh_token must be a string")
        return {"revoked": state.auth.revoke_refresh_tokens(token)}

    async def get_buckets(request: Request) -> Any:
        return state.buckets.to_json()

    async def set_buckets(request: Request) -> Any:
        settings = parse_settings(await _json_object(request), configured_defaults(state.config))
        state.buckets = MerchantBuckets(settings)
        return state.buckets.to_json()

    table: list[tuple[str, str, Handler]] = [
        ("POST", "/_sandbox/reset", reset),
        ("GET", "/_sandbox/config", get_config),
        ("POST", "/_sandbox/config", set_config),
        ("POST", "/_sandbox/faults", add_fault),
        ("GET", "/_sandbox/faults", list_faults),
        ("DELETE", "/_sandbox/faults", clear_faults),
        ("POST", "/_sandbox/carts/{id}/confirm_payment", confirm),
        ("GET", "/_sandbox/carts/{id}", cart),
        ("GET", "/_sandbox/calls", calls),
        ("GET", "/_sandbox/stats", stats),
        ("POST", "/_sandbox/tokens/expire", expire_tokens),
        ("POST", "/_sandbox/tokens/revoke", revoke_refresh_tokens),
        ("GET", "/_sandbox/buckets", get_buckets),
        ("POST", "/_sandbox/buckets", set_buckets),
    ]
    routes = [Route(path, _guard(handler), methods=[method]) for method, path, handler in table]
    return routes + after_submit_routes(state, _guard, _json_object)
