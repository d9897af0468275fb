"""Finding and redacting what the text rules find: card numbers, client secrets, JWTs, header
lines and configured credentials. Cheap when there is nothing to find."""

from __future__ import annotations

from typing import Any

from orchestrator.sensitive.cards import card_spans, mask_cards
from orchestrator.sensitive.credentials import current as current_credentials
from orchestrator.sensitive.credentials import holds_credential
from orchestrator.sensitive.patterns import (
    CLIENT_SECRET_RE,
    HEADER_LINE_RE,
    HEADER_VALUE_RE,
    JWT_RE,
    SHORTEST,
    may_hold_card,
    may_hold_other,
)
from orchestrator.sensitive.rules import (
    CARD_NUMBER,
    CLIENT_SECRET,
    CREDENTIAL,
    HEADER_LINE,
    JWT,
    REDACTED,
    Finding,
)


def find_in_text(text: str, *, credentials: bool = True) -> Finding | None:
    """The first rule `text` breaks (rules in the database's order, then credentials), or None."""
    if len(text) < SHORTEST:
        return None
    if may_hold_card(text):
        for _start, _end, count in card_spans(text):
            return Finding(CARD_NUMBER, f"a Luhn-valid {count}-digit number")
    if may_hold_other(text):
        if "_secret_" in text.lower():
            return Finding(CLIENT_SECRET, CLIENT_SECRET.what)
        if "eyJ" in text and JWT_RE.search(text):
            return Finding(JWT, JWT.what)
        if HEADER_LINE_RE.search(text):
            return Finding(HEADER_LINE, HEADER_LINE.what)
    if credentials and holds_credential(text):
        return Finding(CREDENTIAL, CREDENTIAL.what)
    return None


def redact_text(text: str) -> str:
    """`text` with everything a text rule finds replaced by ``[REDACTED]`` (a header keeps its
    name, up to the colon). Cheap when there is nothing to find: a digit scan (and the card
    pre-check if there is one) and substring tests, one per configured credential."""
    if len(text) < SHORTEST:
        return text
    if may_hold_card(text):
        text = mask_cards(text)
    if may_hold_other(text):
        text = CLIENT_SECRET_RE.sub(REDACTED, text)
        if "eyJ" in text:
            text = JWT_RE.sub(REDACTED, text)
        text = HEADER_VALUE_RE.sub(lambda m: m.group(1) + REDACTED, text)
    for value in current_credentials():
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_excerpt(text: str, limit: int) -> str:
    """The first `limit` characters of `text`, redacted. Redacted before the cut (a credential
    or card across the cut is masked whole) and after it (a cut group can complete a number)."""
    slack = 256 + max((len(value) for value in current_credentials()), default=0)
    return redact_text(redact_text(text[: limit + slack])[:limit])


def printable_ref(ref: Any) -> str:
    """A reference a user typed, safe to print back (a card number pasted as an id is not)."""
    text = str(ref)
    return "(hidden: it looks like a secret)" if find_in_text(text) is not None else text
