"""SandboxControl: the /_sandbox control surface from a test, in-process or over HTTP."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

IN_PROCESS_CONTROL_URL = "http://sandbox/_sandbox"


class SandboxControl:
    """Async helper whose methods mirror the control endpoints.

    ``SandboxControl(transport=asgi_transport(app))`` for an in-process sandbox,
    ``SandboxControl(server.control_url)`` for one served over HTTP.
    """

    def __init__(
        self,
        control_url: str = IN_PROCESS_CONTROL_URL,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.control_url = control_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.control_url, transport=transport, timeout=timeout
        )

    async def __aenter__(self) -> SandboxControl:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._client.request(method, self.control_url + path, **kwargs)
        response.raise_for_status()
        return response.json()

    async def reset(self) -> None:
        await self._call("POST", "/reset")

    async def config(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/config")
        return result

    async def configure(
        self,
        *,
        latency_ms: float | None = None,
        latency_jitter_ms: float | None = None,
        token_ttl_seconds: float | None = None,
        processing_ms: float | None = None,
        decline_shape: str | None = None,
        decline_step: str | None = None,
        webhook_time_scale: float | None = None,
        webhook_timeout_seconds: float | None = None,
        canceled_event: str | None = None,
    ) -> dict[str, Any]:
        """Change runtime knobs; `processing_ms` keeps submitted orders PROCESSING that long,
        `decline_shape`/`decline_step` say how and where a declined card is refused,
        `webhook_time_scale` compresses Violet's webhook retry schedule."""
        body = {
            k: v
            for k, v in (
                ("latency_ms", latency_ms),
                ("latency_jitter_ms", latency_jitter_ms),
                ("token_ttl_seconds", token_ttl_seconds),
                ("processing_ms", processing_ms),
                ("decline_shape", decline_shape),
                ("decline_step", decline_step),
                ("webhook_time_scale", webhook_time_scale),
                ("webhook_timeout_seconds", webhook_timeout_seconds),
                ("canceled_event", canceled_event),
            )
            if v is not None
        }
        result: dict[str, Any] = await self._call("POST", "/config", json=body)
        return result

    async def add_fault(
        self,
        op: str,
        kind: str,
        *,
        count: int | None = None,
        probability: float | None = None,
        status: int | None = None,
        latency_ms: float | None = None,
        retry_after: float | str | None = None,
        size_bytes: int | None = None,
        message: str | None = None,
        content_type: str | None = None,
    ) -> int:
        """Arm a fault; returns its id. See docs/sandbox.md for ops and kinds."""
        spec: dict[str, Any] = {"op": op, "kind": kind}
        for key, value in (
            ("count", count),
            ("probability", probability),
            ("status", status),
            ("latency_ms", latency_ms),
            ("retry_after", retry_after),
            ("size_bytes", size_bytes),
            ("message", message),
            ("content_type", content_type),
        ):
            if value is not None:
                spec[key] = value
        result = await self._call("POST", "/faults", json=spec)
        return int(result["id"])

    async def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", "/faults")
        return result

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/faults")

    async def confirm_payment(self, cart_id: int) -> dict[str, Any]:
        """The shopper confirms the payment intent or passes 3-D Secure."""
        result: dict[str, Any] = await self._call("POST", f"/carts/{cart_id}/confirm_payment")
        return result

    async def cart(self, cart_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/carts/{cart_id}")
        return result

    async def calls(
        self, op: str | None = None, cart_id: int | None = None
    ) -> list[dict[str, Any]]:
        """The call log, optionally only one operation's and/or one cart's calls."""
        params: dict[str, Any] = {}
        if op is not None:
            params["op"] = op
        if cart_id is not None:
            params["cart_id"] = cart_id
        result: list[dict[str, Any]] = await self._call("GET", "/calls", params=params)
        return result

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/stats")
        return result

    async def expire_tokens(self) -> None:
        """Make every access token issued so far answer 401 "Token has expired"."""
        await self._call("POST", "/tokens/expire")

    async def revoke_refresh_tokens(self, refresh_token: str | None = None) -> int:
        body = {"refresh_token": refresh_token} if refresh_token is not None else {}
        result = await self._call("POST", "/tokens/revoke", json=body)
        return int(result["revoked"])

    # -- merchants' rate limits -------------------------------------------------------------

    async def configure_buckets(
        self,
        *,
        size: int | None = None,
        leak_per_s: float | None = None,
        time_scale: float | None = None,
        merchants: dict[int, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Turn on per-merchant leaky buckets (all empty): `size` requests leaking `leak_per_s`
        a second, `merchants` {id: {size?, leak_per_s?}} overriding them; returns
        :meth:`buckets`. Omitted numbers are the sandbox's own (40, 2/s, time scale 1)."""
        body: dict[str, Any] = {
            k: v
            for k, v in (("size", size), ("leak_per_s", leak_per_s), ("time_scale", time_scale))
            if v is not None
        }
        if merchants is not None:
            body["merchants"] = {str(k): v for k, v in merchants.items()}
        result: dict[str, Any] = await self._call("POST", "/buckets", json=body)
        return result

    async def disable_buckets(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "/buckets", json={"enabled": False})
        return result

    async def buckets(self) -> dict[str, Any]:
        """{enabled, size, leak_per_s, time_scale, merchants: {id: {size, leak_per_s, level,
        admitted, rate_limited}}} (merchant-id keys are strings)."""
        result: dict[str, Any] = await self._call("GET", "/buckets")
        return result

    # -- after submit: webhooks and bag moves ------------------------------------------------

    async def register_webhook(self, url: str, events: list[str] | None = None) -> int:
        """Send events (all types unless `events`) to `url`; returns the webhook id."""
        body: dict[str, Any] = {"url": url}
        if events is not None:
            body["events"] = events
        result = await self._call("POST", "/webhooks", json=body)
        return int(result["id"])

    async def webhooks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", "/webhooks")
        return result

    async def enable_webhook(self, webhook_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"/webhooks/{webhook_id}/enable")
        return result

    async def add_webhook_fault(
        self,
        kind: str,
        *,
        count: int = 1,
        event_type: str | None = None,
        latency_ms: float | None = None,
    ) -> int:
        """Spoil the next `count` events (of `event_type`): duplicate, reorder, delay, drop or
        bad_signature."""
        spec: dict[str, Any] = {"kind": kind, "count": count}
        if event_type is not None:
            spec["event_type"] = event_type
        if latency_ms is not None:
            spec["latency_ms"] = latency_ms
        result = await self._call("POST", "/webhook_faults", json=spec)
        return int(result["id"])

    async def clear_webhook_faults(self) -> None:
        await self._call("DELETE", "/webhook_faults")

    async def webhook_events(
        self, order_id: int | None = None, event_type: str | None = None
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if order_id is not None:
            params["order_id"] = order_id
        if event_type is not None:
            params["event_type"] = event_type
        result: list[dict[str, Any]] = await self._call("GET", "/webhook_events", params=params)
        return result

    async def webhook_attempts(self, event_id: int | None = None) -> list[dict[str, Any]]:
        params = {"event_id": event_id} if event_id is not None else {}
        result: list[dict[str, Any]] = await self._call("GET", "/webhook_attempts", params=params)
        return result

    async def release_webhook_events(self) -> int:
        """Send the events a reorder fault is holding back now."""
        result = await self._call("POST", "/webhook_events/release")
        return int(result["released"])

    async def resend_webhook_event(self, event_id: int) -> int:
        result = await self._call("POST", f"/webhook_events/{event_id}/resend")
        return int(result["id"])

    async def move_bag(
        self, order_id: int, bag_id: int, action: str, *, amount: int | None = None
    ) -> dict[str, Any]:
        """The merchant accepts, rejects, ships, delivers, completes, cancels or refunds a bag;
        returns the order as Violet shows it afterwards."""
        body = {"amount": amount} if amount is not None else {}
        path = f"/orders/{order_id}/bags/{bag_id}/{action}"
        result: dict[str, Any] = await self._call("POST", path, json=body)
        return result

    async def set_merchant(self, merchant_id: int, *, enabled: bool) -> dict[str, Any]:
        """Violet enables or disables a merchant (MERCHANT_ENABLED / MERCHANT_DISABLED)."""
        action = "enable" if enabled else "disable"
        result: dict[str, Any] = await self._call("POST", f"/merchants/{merchant_id}/{action}")
        return result
