"""How the sandbox refuses a request: Violet's two error body shapes, and a dropped connection."""

from __future__ import annotations

import time
from typing import Any


class SandboxError(Exception):
    """A 4xx/5xx answer in Violet's generic Error shape: {code, error, message}."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}
        """More fields of the body (e.g. an ``errors[]`` list), after the three standard ones."""

    def body(self) -> dict[str, Any]:
        return {"code": self.status, "error": self.error, "message": self.message, **self.extra}


class AuthError(Exception):
    """A 401/403 in the shape Violet's auth layer uses: {status, message, error_code, timestamp}."""

    def __init__(self, status: int, message: str, error_code: int) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code

    def body(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "error_code": self.error_code,
            "timestamp": int(time.time() * 1000),
        }


class DropConnection(Exception):
    """Raised inside the app to make the connection die mid-response (fault injection).

    Over HTTP uvicorn closes the socket after the status line; in-process,
    :func:`orchestrator.sandbox.asgi_transport` turns it into ``httpx.RemoteProtocolError``.
    """


def bad_request(error: str, message: str) -> SandboxError:
    return SandboxError(400, error, message)


def not_found(error: str, message: str) -> SandboxError:
    return SandboxError(404, error, message)


def rate_limited(status: int = 429, retry_after: str | None = None) -> SandboxError:
    """The answer Violet relays when a merchant platform's rate limit trips (README §3.4)."""
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return SandboxError(
        status,
        "rate_limited",
        "Too many requests to the merchant platform; retry later",
        headers,
    )
