"""In-process transport that fails like a socket: dropped connections and read timeouts.

``httpx.ASGITransport`` re-raises whatever the app raised and ignores timeouts; a client under
test must instead see ``httpx.RemoteProtocolError`` and ``httpx.ReadTimeout``, exactly as over
real HTTP, or its outcome-unknown handling would be tested against the wrong exceptions.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx

from orchestrator.sandbox.errors import DropConnection


class SandboxASGITransport(httpx.AsyncBaseTransport):
    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        read_timeout = timeouts.get("read")
        try:
            if read_timeout is None:
                return await self._inner.handle_async_request(request)
            with anyio.fail_after(read_timeout):
                return await self._inner.handle_async_request(request)
        except DropConnection:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body", request=request
            ) from None
        except TimeoutError:
            raise httpx.ReadTimeout("timed out waiting for the sandbox", request=request) from None

    async def aclose(self) -> None:
        await self._inner.aclose()


def asgi_transport(app: Any) -> httpx.AsyncBaseTransport:
    """An httpx transport that runs requests against ``app`` in-process."""
    return SandboxASGITransport(app)
