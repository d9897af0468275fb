"""CSRF tokens: every form the console renders carries one, every POST must bring it back.

A token is an HMAC over its issue time and the principal it was rendered for, under a key only
the server holds (`ORCHESTRATOR_CONSOLE_SECRET`, or a random one per process). Another site can
make a browser send a POST with its cookies or basic-auth credentials, but it cannot read a
page of the console to learn a token, nor compute one; a token rendered for one person is
refused for another, and it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Final

from orchestrator.console.auth import Principal

__all__ = ["FIELD", "CsrfTokens"]

#: The form field (or `X-CSRF-Token` header) a POST carries its token in.
FIELD: Final = "csrf_token"
HEADER: Final = "x-csrf-token"
MAX_AGE_SECONDS: Final = 12 * 3600


class CsrfTokens:
    """Issues and checks tokens under one key."""

    def __init__(self, key: bytes | None = None, *, max_age: float = MAX_AGE_SECONDS) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)
        self.max_age = max_age

    def _mac(self, issued: int, principal: Principal) -> str:
        message = f"{issued}|{principal.via}|{principal.role}|{principal.name}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, principal: Principal, *, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        return f"{issued}.{self._mac(issued, principal)}"

    def valid(self, token: str | None, principal: Principal, *, now: float | None = None) -> bool:
        """Whether `token` was issued to `principal` by this key and has not expired."""
        if not token or len(token) > 200:
            return False
        issued_text, _, mac = token.partition(".")
        if not issued_text.isascii() or not issued_text.isdigit():
            return False
        issued = int(issued_text)
        age = (time.time() if now is None else now) - issued
        if not -60 <= age <= self.max_age:  # a minute of clock skew between replicas
            return False
        return hmac.compare_digest(mac.encode(), self._mac(issued, principal).encode())
