"""Redaction of secrets and card data before anything leaves the client (logs, errors, audit).

Two layers, both from the one specification in `orchestrator.sensitive`: ``redact`` knows the
sensitive *keys* of Violet bodies and headers and scrubs every string and number under them;
``scrub_text`` catches what slips into free text (a card number in an error message, a JWT or a
header line echoed back, the app secret). Both are applied to everything the client emits, so
callers need not remember to.
"""

from __future__ import annotations

from orchestrator.logs import RedactingFilter
from orchestrator.sensitive import REDACTED, is_luhn_valid, mask_card_number
from orchestrator.sensitive import redact_json as redact
from orchestrator.sensitive import redact_text as scrub_text

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "is_luhn_valid",
    "mask_card_number",
    "redact",
    "scrub_text",
]
