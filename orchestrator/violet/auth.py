"""Violet's JWT: when it expires, and when to refresh it (no signature check: it is Violet's token).

Violet does not return an expiry with the token, so the ``exp`` claim of the JWT payload is the
source of truth. Deadlines are kept on the monotonic clock so a wall-clock jump cannot make the
client use a dead token or refresh in a loop.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["TokenState", "decode_jwt_claims", "refresh_margin"]

# Refresh this long before ``exp`` at most, and never later than 90% of the lifetime.
MAX_REFRESH_MARGIN: Final = 300.0
REFRESH_FRACTION: Final = 0.1


def decode_jwt_claims(token: str) -> dict[str, Any]:
    """The JSON payload of a JWT (base64url, unverified); empty when it is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def refresh_margin(lifetime: float) -> float:
    """How long before expiry to refresh: 5 minutes or 10% of the lifetime, whichever is smaller."""
    return max(0.0, min(MAX_REFRESH_MARGIN, REFRESH_FRACTION * lifetime))


@dataclass(frozen=True, slots=True)
class TokenState:
    """A usable access token with its monotonic deadlines (``inf`` when the JWT has no ``exp``)."""

    token: str
    expires_at: float
    refresh_at: float

    @classmethod
    def from_token(cls, token: str) -> TokenState:
        now_mono = time.monotonic()
        claims = decode_jwt_claims(token)
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            # Unknown lifetime: use the token until Violet answers 401, then refresh.
            return cls(token=token, expires_at=float("inf"), refresh_at=float("inf"))
        now_wall = time.time()
        remaining = float(exp) - now_wall
        iat = claims.get("iat")
        lifetime = (
            float(exp) - float(iat)
            if isinstance(iat, int | float) and not isinstance(iat, bool) and iat < exp
            else remaining
        )
        expires_at = now_mono + remaining
        return cls(
            token=token, expires_at=expires_at, refresh_at=expires_at - refresh_margin(lifetime)
        )

    def needs_refresh(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) >= self.refresh_at

    def is_expired(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) >= self.expires_at
