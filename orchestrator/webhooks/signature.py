"""`X-Violet-Hmac`: Base64 of HMAC-SHA256 over the raw body, keyed with the app secret.

Several secrets are accepted at once so the app secret can rotate without losing webhooks: the
old and the new one both verify until the old one is dropped from the settings. Comparison is
constant-time over the decoded digest (a Base64 spelling without padding verifies too).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from orchestrator.errors import ConfigError

HEADER = "x-violet-hmac"
_DIGEST_BYTES = hashlib.sha256().digest_size


def _secret_bytes(secret: Any) -> bytes:
    getter = getattr(secret, "get_secret_value", None)
    value = getter() if callable(getter) else secret
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise TypeError("a webhook secret is a str, bytes or SecretStr")
    return value.encode()


def sign(body: bytes, secret: Any) -> str:
    """The `X-Violet-Hmac` value Violet sends with `body` (the sandbox and the tests sign so)."""
    digest = hmac.new(_secret_bytes(secret), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _decode(signature: str) -> bytes | None:
    text = signature.strip()
    if len(text) > 128:
        return None
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _DIGEST_BYTES else None


class Verifier:
    """Checks a signature against every configured secret (keyed HMACs prepared once)."""

    def __init__(self, secrets: Iterable[Any]) -> None:
        keys = [_secret_bytes(secret) for secret in secrets]
        keys = [key for key in keys if key]
        if not keys:
            raise ConfigError(
                "no webhook secret: set VIOLET_WEBHOOK_SECRETS or VIOLET_APP_SECRET (Violet signs"
                " webhooks with the app secret)"
            )
        self._prepared = [hmac.new(key, digestmod=hashlib.sha256) for key in keys]

    def verify(self, body: bytes, signature: str | None) -> bool:
        """Whether `signature` is the body's HMAC under one of the secrets.

        Every secret is tried, whichever matches: the time taken does not tell which one did.
        """
        if not signature:
            return False
        given = _decode(signature)
        if given is None:
            return False
        matched = False
        for prepared in self._prepared:
            mac = prepared.copy()
            mac.update(body)
            matched |= hmac.compare_digest(mac.digest(), given)
        return matched
