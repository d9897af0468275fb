"""The /_sandbox routes for an order's life after submit: webhook registration, delivery faults
and the delivery log, moving bags along, switching merchants off and on.

Violet registers webhooks in its dashboard (the reference names no creation endpoint), so the
sandbox takes the URL here: ``POST /_sandbox/webhooks {"url": ..., "events": [...]?}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from orchestrator.sandbox import bags
from orchestrator.sandbox.carts import load_cart
from orchestrator.sandbox.catalog import MERCHANTS
from orchestrator.sandbox.errors import SandboxError
from orchestrator.sandbox.model import render_cart
from orchestrator.sandbox.orders import settle_due
from orchestrator.sandbox.state import SandboxState
from orchestrator.sandbox.validation import as_int

Handler = Callable[[Request], Awaitable[Any]]
JsonReader = Callable[[Request], Awaitable[dict[str, Any]]]


def _int_param(request: Request, name: str) -> int:
    try:
        return int(request.path_params[name])
    except ValueError:
        raise SandboxError(400, "invalid_parameter", f"{name} must be an integer") from None


def _int_query(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise SandboxError(400, "invalid_parameter", f"{name} must be an integer") from None


def hook_routes(state: SandboxState, read_json: JsonReader) -> list[tuple[str, str, Handler]]:
    hub = state.webhooks

    async def register(request: Request) -> Any:
        data = await read_json(request)
        url = data.get("url")
        events = data.get("events")
        if not isinstance(url, str):
            raise SandboxError(400, "invalid_field", "url must be a string")
        if events is not None and (
            not isinstance(events, list) or not all(isinstance(e, str) for e in events)
        ):
            raise SandboxError(400, "invalid_field", "events must be a list of event types")
        return hub.register(url, events).to_json()

    async def list_hooks(request: Request) -> Any:
        return [h.to_json() for h in hub.webhooks.values()]

    async def delete_hook(request: Request) -> Any:
        hook = hub.webhook(_int_param(request, "id"))
        del hub.webhooks[hook.id]
        hub.pending = [d for d in hub.pending if d.webhook is not hook]
        return {"deleted": hook.id}

    async def enable_hook(request: Request) -> Any:
        hook = hub.webhook(_int_param(request, "id"))
        hook.status, hook.pause_rounds, hook.paused_until = "ACTIVE", 0, 0.0
        hook.failures.clear()
        state.sender.kick()
        return hook.to_json()

    async def add_fault(request: Request) -> Any:
        return hub.add_fault(await read_json(request)).to_json()

    async def list_faults(request: Request) -> Any:
        return [f.to_json() for f in hub.faults]

    async def clear_faults(request: Request) -> Any:
        hub.faults.clear()
        return {"cleared": True}

    async def release(request: Request) -> Any:
        released = hub.release_held()
        state.sender.kick()
        return {"released": released}

    async def events(request: Request) -> Any:
        order_id = _int_query(request, "order_id")
        event_type = request.query_params.get("event_type")
        return [
            e.to_json()
            for e in hub.events.values()
            if order_id in (None, e.order_id) and event_type in (None, e.event_type)
        ]

    async def attempts(request: Request) -> Any:
        event_id = _int_query(request, "event_id")
        return [a for a in hub.attempts if event_id in (None, a["event_id"])]

    async def resend(request: Request) -> Any:
        event = hub.resend(_int_param(request, "event_id"))
        state.sender.kick()
        return {"id": event.id}

    return [
        ("POST", "/_sandbox/webhooks", register),
        ("GET", "/_sandbox/webhooks", list_hooks),
        ("DELETE", "/_sandbox/webhooks/{id}", delete_hook),
        ("POST", "/_sandbox/webhooks/{id}/enable", enable_hook),
        ("POST", "/_sandbox/webhook_faults", add_fault),
        ("GET", "/_sandbox/webhook_faults", list_faults),
        ("DELETE", "/_sandbox/webhook_faults", clear_faults),
        ("POST", "/_sandbox/webhook_events/release", release),
        ("GET", "/_sandbox/webhook_events", events),
        ("POST", "/_sandbox/webhook_events/{event_id}/resend", resend),
        ("GET", "/_sandbox/webhook_attempts", attempts),
    ]


def life_routes(state: SandboxState, read_json: JsonReader) -> list[tuple[str, str, Handler]]:
    async def move_bag(request: Request) -> Any:
        settle_due(state)
        cart = load_cart(state, _int_param(request, "id"), "order_not_found")
        bag = bags.find_bag(cart, _int_param(request, "bag_id"))
        data = await read_json(request)
        amount = as_int(data["amount"], "amount") if data.get("amount") is not None else None
        bags.move(state, cart, bag, request.path_params["action"], amount)
        return render_cart(cart)

    async def merchant(request: Request) -> Any:
        merchant_id = _int_param(request, "id")
        found = MERCHANTS.get(merchant_id)
        if found is None:
            raise SandboxError(404, "merchant_not_found", f"merchant {merchant_id} not found")
        action = request.path_params["action"]
        if action not in ("disable", "enable"):
            raise SandboxError(400, "invalid_action", "action must be disable or enable")
        disable = action == "disable"
        if disable:
            state.disabled_merchants.add(merchant_id)
        else:
            state.disabled_merchants.discard(merchant_id)
        status = "DISABLED" if disable else "ENABLED"
        payload = {
            "id": found.id,
            "merchant_name": found.name,
            "platform": found.platform,
            "status": status,
        }
        state.emit_merchant(f"MERCHANT_{status}", payload)
        return payload

    return [
        ("POST", "/_sandbox/orders/{id}/bags/{bag_id}/{action}", move_bag),
        ("POST", "/_sandbox/merchants/{id}/{action}", merchant),
    ]


def after_submit_routes(
    state: SandboxState, guard: Callable[[Handler], Any], read_json: JsonReader
) -> list[Route]:
    table = hook_routes(state, read_json) + life_routes(state, read_json)
    return [Route(path, guard(handler), methods=[method]) for method, path, handler in table]
