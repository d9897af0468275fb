"""Violet failures, classified by what the caller may do next (retry, reconcile, fail, re-auth).

The classification is the contract with the runner: ``retryable`` means Violet did not apply the
request, ``outcome_unknown`` means it may have (reconcile before retrying), ``permanent`` means
retrying cannot help, ``auth`` means the credentials are wrong. Every instance carries the HTTP
context, with the body already redacted, so it can be logged and audited as is.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any, ClassVar, Final

import httpx

from orchestrator.errors import Classification, VioletError
from orchestrator.sensitive import redact_excerpt
from orchestrator.violet.redact import redact

if TYPE_CHECKING:
    from orchestrator.violet.models import Cart, OrderError

__all__ = [
    "CARD_DECLINED",
    "Classification",
    "VioletAuthError",
    "VioletBudgetClosed",
    "VioletCartErrors",
    "VioletError",
    "VioletNotFound",
    "VioletOutcomeUnknown",
    "VioletPaymentDeclined",
    "VioletPermanentError",
    "VioletRateLimited",
    "VioletRetryableError",
    "VioletSendRefused",
    "decline_in",
    "error_from_response",
    "error_from_transport",
]

CARD_DECLINED: Final = "card_declined"
"""The one error type every decline is recorded under, wherever Violet's answer carried it."""

#: Error types and codes that are themselves a decline (Stripe's codes, as Violet relays them).
DECLINE_TYPES: Final = frozenset(
    {
        "card_declined",
        "insufficient_funds",
        "expired_card",
        "incorrect_cvc",
        "invalid_cvc",
        "invalid_number",
        "invalid_card_number",
        "incorrect_number",
        "invalid_expiry_month",
        "invalid_expiry_year",
    }
)
_MAX_TEXT_BODY: Final = 500


class VioletRetryableError(VioletError):
    """Violet did not apply the request; the same call may be made again later."""

    classification: ClassVar[Classification] = "retryable"


class VioletRateLimited(VioletRetryableError):
    """HTTP 429 (Violet relays the merchant platform's limit); honour ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class VioletBudgetClosed(VioletRetryableError):
    """Not sent: the merchant's rate budget has no turn for this call within the wait the caller
    allows (violet/pacing.py); ``wait`` is how many seconds until it has. Nothing was applied,
    and the call is not a failure of the checkout: it is deferred, no attempt counted."""

    def __init__(self, message: str, *, wait: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.wait = wait


class VioletSendRefused(VioletRetryableError):
    """Known not sent: the step was too old (or the lease in doubt) when the request was to leave.

    Recovery may already have redone the step (violet/gate.py), so the runner leaves it to be
    reconciled instead of repeating the call, and the attempt does not count.
    """


class VioletOutcomeUnknown(VioletError):
    """The request may have been applied: reconcile (read Violet's state) before any retry."""

    classification: ClassVar[Classification] = "outcome_unknown"


class VioletPermanentError(VioletError):
    """Violet refused the request; repeating it unchanged cannot succeed."""

    classification: ClassVar[Classification] = "permanent"


class VioletPaymentDeclined(VioletPermanentError):
    """The payment was refused (declined, insufficient funds, bad card data): new payment needed."""


class VioletNotFound(VioletPermanentError):
    """HTTP 404: no such cart, order or SKU."""


class VioletCartErrors(VioletPermanentError):
    """HTTP 200 whose cart carries blocking ``errors[]`` (bag-level problems at a merchant)."""

    def __init__(
        self, message: str, *, cart: Cart, errors: Sequence[OrderError], **kwargs: Any
    ) -> None:
        kwargs.setdefault("decline_code", decline_in({"errors": [e.model_dump() for e in errors]}))
        super().__init__(message, **kwargs)
        self.cart = cart
        self.errors = list(errors)


class VioletAuthError(VioletError):
    """Bad credentials, or a 401/403 that survived a token refresh."""

    classification: ClassVar[Classification] = "auth"

    @property
    def credentials_refused(self) -> bool:
        """Violet refused the login (or token refresh) itself: the configured credentials are
        wrong, and the call that needed a token was never applied (not sent, or answered 401)."""
        return self.op in ("login", "refresh")


# ---------------------------------------------------------------- classification


def _parse_body(content: bytes) -> dict[str, Any] | list[Any] | str | None:
    if not content:
        return None
    try:
        parsed = json.loads(content)
    except ValueError:  # text or HTML: an excerpt, as the audit keeps it
        return redact_excerpt(
            content[: _MAX_TEXT_BODY * 8].decode("utf-8", "replace"), _MAX_TEXT_BODY
        )
    redacted = redact(parsed)
    if isinstance(redacted, dict | list):
        return redacted
    return str(redacted)


def _error_type(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    for key in ("error", "type", "decline_code"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    errors = body.get("errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict) and isinstance(item.get("type"), str):
                return str(item["type"])
    return None


def _decline_of(entry: dict[str, Any]) -> str | None:
    """The decline one error object carries: its ``decline_code`` (any value: only declines
    have one), or an ``error``/``type``/``code`` that is itself a decline type."""
    code = entry.get("decline_code")
    if isinstance(code, str) and code:
        return code.lower()
    for key in ("error", "type", "code"):
        value = entry.get(key)
        if isinstance(value, str) and value.lower() in DECLINE_TYPES:
            return value.lower()
    return None


def decline_in(body: Any) -> str | None:
    """The decline an error body or cart answer carries, top level or in an ``errors[]`` entry
    (Violet puts the provider's refusal in either); None when it is not a decline."""
    if not isinstance(body, dict):
        return None
    found = _decline_of(body)
    errors = body.get("errors")
    if found is None and isinstance(errors, list):
        found = next((d for e in errors if isinstance(e, dict) and (d := _decline_of(e))), None)
    return found


# Delta-seconds, leniently: a decimal number (fraction, exponent, sign) or an infinity. Not
# what float() also takes (NaN, "1_000", hex-looking junk).
_DELTA_SECONDS: Final = re.compile(
    r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf(?:inity)?", re.IGNORECASE
)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or garbled.

    Never raises, never NaN, never negative; a wait too long for a float is infinity. It is the
    caller's to cap (Settings.max_retry_after): Violet relays whatever the merchant sent.
    """
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, origin unknown
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def error_from_response(
    *,
    op: str,
    method: str,
    path: str,
    status: int,
    content: bytes,
    headers: httpx.Headers,
    read: bool,
) -> VioletError:
    """Map a non-2xx response to the exception class that says what the caller may do.

    ``read`` marks idempotent reads (GET, order search): a failed read applied nothing, so every
    transient failure of a read is retryable; for writes only answers that prove nothing was
    applied (429, 502, 503) are.
    """
    body = _parse_body(content)
    error_type = _error_type(body)
    decline = decline_in(body) if 400 <= status < 500 else None
    message: str | None = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
    context: dict[str, Any] = {
        "status": status,
        "body": body,
        "method": method,
        "path": path,
        "op": op,
        "request_id": headers.get("x-request-id") or headers.get("x-violet-request-id"),
        "error_type": error_type,
    }
    text = message or f"HTTP {status} from Violet"
    cls: type[VioletError]
    if status in (401, 403):
        cls = VioletAuthError
    elif status == 429:
        return VioletRateLimited(
            message or "rate limited by Violet",
            retry_after=parse_retry_after(headers.get("retry-after")),
            **context,
        )
    elif status == 404:
        cls = VioletNotFound
    elif status == 408:
        cls = VioletRetryableError if read else VioletOutcomeUnknown
    elif status == 402 or decline is not None:
        context["decline_code"] = decline or CARD_DECLINED
        cls = VioletPaymentDeclined
    elif 400 <= status < 500:
        cls = VioletPermanentError
    elif status in (502, 503):
        cls = VioletRetryableError
    elif status >= 500:
        # 500 and 504 on a write: the server (or the gateway's upstream) may have applied it.
        cls = VioletRetryableError if read else VioletOutcomeUnknown
    else:
        cls = VioletPermanentError
    return cls(text, **context)


# Failures that happen before a single byte of the request left this process.
PRE_SEND_ERRORS: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def error_from_transport(
    exc: BaseException, *, op: str, method: str, path: str, read: bool
) -> VioletError:
    """Map a transport failure (or the client's own total timeout) to a Violet error.

    Connect failures never reached Violet: retryable for any call. Anything later (read or write
    timeout, dropped connection, our own deadline) may have been applied: outcome unknown for a
    write, retryable for a read. Local protocol misuse is permanent (a bug, not a network event).
    """
    context: dict[str, Any] = {"method": method, "path": path, "op": op}
    name = type(exc).__name__
    if isinstance(exc, PRE_SEND_ERRORS):
        return VioletRetryableError(f"could not reach Violet ({name})", **context)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.ProxyError):
        return VioletPermanentError(f"request could not be sent ({name})", **context)
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        message = f"no answer from Violet in time ({name})"
    else:
        message = f"connection to Violet failed after sending ({name})"
    if read:
        return VioletRetryableError(message, **context)
    return VioletOutcomeUnknown(message, **context)
