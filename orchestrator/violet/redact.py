"""Redaction of secrets and card data before anything leaves the client (logs, errors, audit).

Two layers: ``redact`` knows the sensitive *keys* of Violet bodies and headers; ``scrub_text``
catches what slips into free text (a card number in an error message, a JWT in a log line).
Both are applied to everything the client emits, so callers need not remember to.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "is_luhn_valid",
    "mask_card_number",
    "redact",
    "scrub_text",
]

REDACTED: Final = "[REDACTED]"

_SECRET_KEYS: Final = frozenset(
    {
        "card_cvc",
        "cvc",
        "cvv",
        "password",
        "app_secret",
        "token",
        "refresh_token",
        "payment_intent_client_secret",
        "client_secret",
        "authorization",
    }
)
_CARD_KEYS: Final = frozenset({"card_number", "number"})

# 13-19 digits, optionally grouped by single spaces or dashes, not part of a longer digit run.
_PAN_RE: Final = re.compile(r"(?<![\d])\d(?:[ -]?\d){12,18}(?![\d])")
_JWT_RE: Final = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_CLIENT_SECRET_RE: Final = re.compile(r"\b(?:pi|seti)_[A-Za-z0-9]+_secret_[A-Za-z0-9_]+")
# Cheap pre-check so that text without any of the patterns costs a single scan.
_MAYBE_RE: Final = re.compile(r"\d{4}|eyJ|_secret_")


def is_luhn_valid(digits: str) -> bool:
    """Luhn checksum of a string of digits (what card numbers satisfy)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def mask_card_number(value: Any) -> str:
    """``"4242424242424242"`` -> ``"****4242"``: the last four are what support needs."""
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    return "****" + digits[-4:] if len(digits) >= 4 else REDACTED


def _replace_pan(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = text.replace(" ", "").replace("-", "")
    return REDACTED if is_luhn_valid(digits) else text


def scrub_text(text: str) -> str:
    """Replace Luhn-valid 13-19 digit runs, JWTs and Stripe client secrets found in free text."""
    if not _MAYBE_RE.search(text):
        return text
    text = _PAN_RE.sub(_replace_pan, text)
    if "eyJ" in text:
        text = _JWT_RE.sub(REDACTED, text)
    if "_secret_" in text:
        text = _CLIENT_SECRET_RE.sub(REDACTED, text)
    return text


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in _SECRET_KEYS or lowered.startswith("x-violet-")


def redact(obj: Any) -> Any:
    """Deep copy of ``obj`` with sensitive values replaced (card numbers keep their last four).

    Also scrubs free-text strings and Luhn-valid 13-19 digit integers, so a redacted body can
    never trip the card-number tripwire of the audit store.
    """
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            if isinstance(key, str):
                lowered = key.lower()
                if lowered in _CARD_KEYS and value is not None:
                    out[key] = mask_card_number(value)
                    continue
                if value is not None and _is_secret_key(lowered):
                    out[key] = REDACTED
                    continue
            out[key] = redact(value)
        return out
    if isinstance(obj, list | tuple):
        return [redact(item) for item in obj]
    if isinstance(obj, str):
        return scrub_text(obj)
    if isinstance(obj, int) and not isinstance(obj, bool) and obj > 10**12:
        digits = str(obj)
        if 13 <= len(digits) <= 19 and is_luhn_valid(digits):
            return REDACTED
    return obj


class RedactingFilter(logging.Filter):
    """Scrubs every record it sees; attach it to a logger or handler that may carry secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is not ours to fix; leave the record alone
            return True
        scrubbed = scrub_text(message)
        if scrubbed != message:
            record.msg = scrubbed
            record.args = None
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text)
        return True
