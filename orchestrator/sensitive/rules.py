"""The rules of what is secret, the layers that apply them, and the JSON keys whose values are.

Findings name the rule, never the value. The key lists have a frozen copy in the tripwire's
migration (migrations/versions/0006_one_secret_spec.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

REDACTED: Final = "[REDACTED]"

VALIDATION: Final = "validation"
REDACTION: Final = "redaction"
LOGS: Final = "logs"
DATABASE: Final = "database"
LAYERS: Final = (VALIDATION, REDACTION, LOGS, DATABASE)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: its name, what it finds (for messages, never the value) and where it applies."""

    name: str
    what: str
    layers: frozenset[str]


_TEXT_LAYERS: Final = frozenset(LAYERS)
_KEY_LAYERS: Final = frozenset({REDACTION, DATABASE})
CARD_NUMBER: Final = Rule(
    "card_number", "a card number (13-19 digits passing the Luhn check)", _TEXT_LAYERS
)
CLIENT_SECRET: Final = Rule(
    "client_secret", 'a client secret ("secret" between underscores)', _TEXT_LAYERS
)
JWT: Final = Rule("jwt", "a JSON web token", _TEXT_LAYERS)
HEADER_LINE: Final = Rule(
    "header_line", "a credential header with its value (X-Violet-*, Authorization)", _TEXT_LAYERS
)
CVC_KEY: Final = Rule("cvc_key", "a card security code field with a value", _KEY_LAYERS)
SECRET_KEY: Final = Rule("secret_key", "a secret field with a value", _KEY_LAYERS)
CREDENTIAL: Final = Rule(
    "credential", "a configured credential", frozenset({VALIDATION, REDACTION, LOGS})
)
RULES: Final = {
    rule.name: rule
    for rule in (CARD_NUMBER, CLIENT_SECRET, JWT, HEADER_LINE, CVC_KEY, SECRET_KEY, CREDENTIAL)
}


@dataclass(frozen=True, slots=True)
class Finding:
    """What was found (the rule) and a short description; never the value itself."""

    rule: Rule
    detail: str

    def __str__(self) -> str:
        return f"{self.rule.name}: {self.detail}"


# -- keys ---------------------------------------------------------------------------------------
# Compared lower-cased. The migration holds a frozen copy of these lists.

CARD_KEYS: Final = frozenset({"card_number"})
CVC_KEYS: Final = frozenset(
    {
        "cvc",
        "cvv",
        "cvc2",
        "cvv2",
        "csc",
        "cvn",
        "card_cvc",
        "card_cvv",
        "card_cvc2",
        "card_cvv2",
        "card_csc",
        "security_code",
        "card_security_code",
    }
)
SECRET_KEYS: Final = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "app_secret",
        "client_secret",
        "payment_intent_client_secret",
        "secret_key",
        "api_key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "authorization",
        "proxy-authorization",
    }
)
HEADER_KEY_PREFIX: Final = "x-violet-"


def key_rule(key: str) -> Rule | None:
    """The key rule a JSON key falls under (its value must be redacted), or None."""
    lowered = key.lower()
    if lowered in CVC_KEYS:
        return CVC_KEY
    if lowered in SECRET_KEYS or lowered in CARD_KEYS or lowered.startswith(HEADER_KEY_PREFIX):
        return SECRET_KEY
    return None
