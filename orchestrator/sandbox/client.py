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
    ) -> dict[str, Any]:
        """Change runtime knobs; `processing_ms` keeps submitted orders PROCESSING that long,
        `decline_shape`/`decline_step` say how and where a declined card is refused."""
        body = {
            k: v
            for k, v in (
                ("latency_ms", latency_ms),
                ("latency_jitter_ms", latency_jitter_ms),
                ("token_ttl_seconds", token_ttl_seconds),
                ("processing_ms", processing_ms),
                ("decline_shape", decline_shape),
                ("decline_step", decline_step),
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
