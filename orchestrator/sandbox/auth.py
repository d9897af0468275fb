"""Violet's authentication, simulated: app credentials, login, JWT expiry and refresh tokens.

Tokens are real HS256 JWTs (header.payload.signature) so a client that decodes ``exp`` to
refresh ahead of time (as Violet's own demo does, README §1.1) works unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.errors import AuthError, SandboxError
from orchestrator.sandbox.model import DEVELOPER_ID, USER_ID
from orchestrator.sandbox.validation import require_object

# error_code values: 11 is Violet's (expired token, README §1.2); the others are the sandbox's.
INVALID_TOKEN = 10
EXPIRED_TOKEN = 11
BAD_HEADER = 12
BAD_APP_CREDENTIALS = 13
BAD_LOGIN = 14
BAD_REFRESH_TOKEN = 15

_CACHE_LIMIT = 10_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_JWT_HEADER = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())


class TokenAuthority:
    """Issues and checks tokens for one sandbox app."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._key = hashlib.sha256(
            f"violet-sandbox:{config.app_secret}:{config.seed}".encode()
        ).digest()
        self._serial = 0
        self._expired_through = 0
        self._refresh_tokens: set[str] = set()
        self._revoked: set[str] = set()
        self._verified: dict[str, tuple[float, int]] = {}

    # -- control surface -------------------------------------------------------------------

    def expire_all(self) -> int:
        """Make every access token issued so far expired (the 401 error_code 11 path)."""
        self._expired_through = self._serial
        self._verified.clear()
        return self._serial

    def revoke_refresh_tokens(self, token: str | None = None) -> int:
        targets = [token] if token is not None else list(self._refresh_tokens)
        for t in targets:
            self._refresh_tokens.discard(t)
            self._revoked.add(t)
        return len(targets)

    # -- Violet endpoints ------------------------------------------------------------------

    def login(self, headers: Mapping[str, str], body: Any) -> dict[str, Any]:
        self.check_app(headers)
        data = require_object(body)
        username = data.get("username")
        password = data.get("password")
        if not isinstance(username, str) or not username:
            raise SandboxError(400, "missing_field", "username is required")
        if not isinstance(password, str) or not password:
            raise SandboxError(400, "missing_field", "password is required")
        if not (
            hmac.compare_digest(username.encode(), self.config.username.encode())
            and hmac.compare_digest(password.encode(), self.config.password.encode())
        ):
            raise AuthError(401, "Invalid username or password", BAD_LOGIN)
        refresh_token = secrets.token_urlsafe(32)
        self._refresh_tokens.add(refresh_token)
        return {
            "id": USER_ID,
            "first_name": "Sandbox",
            "last_name": "Developer",
            "email": self.config.username,
            "type": "DEVELOPER",
            "verified": True,
            "status": "ACTIVE",
            "roles": ["DEVELOPER"],
            "tos_accepted": True,
            "token": self._mint(),
            "refresh_token": refresh_token,
        }

    def refresh(self, headers: Mapping[str, str]) -> dict[str, Any]:
        self.check_app(headers)
        token = headers.get("x-violet-token")
        if not token:
            raise AuthError(401, "Missing header X-Violet-Token (refresh token)", BAD_HEADER)
        if token not in self._refresh_tokens:
            raise AuthError(401, "Invalid or revoked refresh token", BAD_REFRESH_TOKEN)
        return {"token": self._mint()}

    # -- checks ----------------------------------------------------------------------------

    def check_app(self, headers: Mapping[str, str]) -> None:
        app_id = headers.get("x-violet-app-id")
        if not app_id:
            raise AuthError(401, "Missing header X-Violet-App-Id", BAD_HEADER)
        secret = headers.get("x-violet-app-secret")
        if not secret:
            raise AuthError(401, "Missing header X-Violet-App-Secret", BAD_HEADER)
        if app_id.strip() != str(self.config.app_id):
            raise AuthError(
                403, "Invalid app credentials: unknown X-Violet-App-Id", BAD_APP_CREDENTIALS
            )
        if not hmac.compare_digest(secret.encode(), self.config.app_secret.encode()):
            raise AuthError(
                403, "Invalid app credentials: wrong X-Violet-App-Secret", BAD_APP_CREDENTIALS
            )

    def verify(self, headers: Mapping[str, str]) -> None:
        """Every non-auth /v1 call: app headers plus a valid, unexpired access token."""
        self.check_app(headers)
        token = headers.get("x-violet-token")
        if not token:
            raise AuthError(401, "Missing header X-Violet-Token", BAD_HEADER)
        known = self._verified.get(token)
        if known is None:
            known = self._decode(token)
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[token] = known
        exp, serial = known
        if time.time() >= exp or serial <= self._expired_through:
            raise AuthError(401, "Token has expired", EXPIRED_TOKEN)

    # -- JWT -------------------------------------------------------------------------------

    def _mint(self) -> str:
        self._serial += 1
        now = int(time.time())
        payload = {
            "sub": self.config.username,
            "scopes": ["ROLE_DEVELOPER"],
            "user_id": USER_ID,
            "user_type": "DEVELOPER",
            "merchant_ids": [],
            "developer_id": DEVELOPER_ID,
            "app_id": self.config.app_id,
            "iss": "violet-sandbox",
            "iat": now,
            "exp": int(now + self.config.token_ttl_seconds),
            "jti": str(self._serial),
        }
        signing_input = _JWT_HEADER + "." + _b64(json.dumps(payload).encode())
        return signing_input + "." + _b64(self._sign(signing_input))

    def _sign(self, signing_input: str) -> bytes:
        return hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()

    def _decode(self, token: str) -> tuple[float, int]:
        invalid = AuthError(401, "Invalid X-Violet-Token", INVALID_TOKEN)
        parts = token.split(".")
        if len(parts) != 3:
            raise invalid
        try:
            signature = _unb64(parts[2])
            expected = self._sign(parts[0] + "." + parts[1])
            payload = json.loads(_unb64(parts[1]))
        except ValueError:  # bad base64, non-ASCII, bad JSON
            raise invalid from None
        if not hmac.compare_digest(signature, expected):
            raise invalid
        if not isinstance(payload, dict) or payload.get("app_id") != self.config.app_id:
            raise invalid
        try:
            return float(payload["exp"]), int(payload.get("jti", 0))
        except (KeyError, TypeError, ValueError):
            raise invalid from None
