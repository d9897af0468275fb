"""One Violet session: the transport's connection pools, the app credentials and the JWT.

`VioletClient` (client.py) adds one typed method per endpoint on top; this is what they share.
Login and refresh are single-flight, so concurrent callers wait for one login, and the
credentials and tokens are registered as secrets the moment they are known (sensitive.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol, Self, cast

import httpx
from pydantic import SecretStr

from orchestrator import observe, tracing
from orchestrator.errors import ConfigError
from orchestrator.sensitive import register_credential, register_token
from orchestrator.violet import ops
from orchestrator.violet.answers import answer_error, failure, read_cart, read_json
from orchestrator.violet.auth import TokenState
from orchestrator.violet.calls import record_answer, record_failure
from orchestrator.violet.errors import VioletAuthError, VioletError, VioletPermanentError
from orchestrator.violet.models import Cart
from orchestrator.violet.ops import Op
from orchestrator.violet.redact import RedactingFilter
from orchestrator.violet.transport import DEFAULT_MAX_RESPONSE_BYTES, Transport

__all__ = ["VioletSession", "VioletSettings"]

#: The client's log name, shared with calls.py (one name for everything the client logs).
_log = logging.getLogger("orchestrator.violet.client")
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


class VioletSession:
    """The connection pools and the shared JWT under `VioletClient`'s endpoint methods.

    Its `_call` sends one operation with a usable token (one refresh and retry on a 401/403)
    and returns the 2xx answer or raises the classified error.
    """

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
        # Masked wherever they appear from now on: logs, errors, the audit trail (`sensitive`).
        register_credential(app_secret)
        register_credential(password)

    @classmethod
    def from_settings(
        cls, settings: VioletSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> Self:
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
        name = type(self).__name__
        return f"{name}(base_url={self._transport.base_url!r}, username={self._username!r})"

    async def __aenter__(self) -> Self:
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
        attributes: dict[str, str | int] = {
            "http.request.method": op.method,
            "url.template": observe.endpoint_of(path),
            "violet.operation": op.name,
        }
        with tracing.span(f"violet {op.name}", attributes) as current:
            start = time.perf_counter()
            sent_headers = self._headers if headers is None else {**self._headers, **headers}
            try:
                response = await self._transport.send(op, path, body, params, sent_headers)
            except (VioletError, asyncio.CancelledError) as exc:
                err = exc if isinstance(exc, VioletError) else None
                record_failure(op, path, start, None if secret_body else body, err)
                raise
            response.extensions["orchestrator_latency_ms"] = (time.perf_counter() - start) * 1000.0
            if current is not None:
                current.set_attribute("http.response.status_code", response.status_code)
                if not response.is_success:
                    tracing.mark_error(current, str(response.status_code))
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
