"""What is secret: the one specification that request validation, the Violet client's redaction,
the log handlers and the database tripwire all apply, so no layer lets through what another
refuses.

Rules, and the layers that apply them (V validation, R redaction, L logs, D database tripwire):

| rule            | finds                                                         | V | R | L | D |
|-----------------|---------------------------------------------------------------|---|---|---|---|
| `card_number`   | 13-19 digits passing the Luhn check (ASCII or full-width      | x | x | x | x |
|                 | digits; groups joined by 1-3 spaces, tabs, NBSP, dots,        |   |   |   |   |
|                 | slashes or dashes; glued to letters or not). Every run of     |   |   |   |   |
|                 | whole groups is checked, so a longer run cannot hide a card.  |   |   |   |   |
|                 | UUIDs are exempt.                                             |   |   |   |   |
| `client_secret` | `_secret_` in any case (Stripe client secrets)                | x | x | x | x |
| `jwt`           | a JSON web token, bare, anywhere                              | x | x | x | x |
| `header_line`   | `X-Violet-...: value`, `Authorization: value` in text         | x | x | x | x |
| `cvc_key`       | a JSON key naming a card security code (`cvc`, `cvv2`, ...)   |   | x |   | x |
| `secret_key`    | a JSON key naming a secret (`password`, `token`, X-Violet-*)  |   | x |   | x |
| `credential`    | a configured credential (app secret, password, tokens) of 8+  | x | x | x |   |
|                 | characters                                                    |   |   |   |   |

A key rule is satisfied by the value `"[REDACTED]"` (any case), JSON null or `""`; a card-number
key also by a mask such as `"****4242"`. The database cannot know the configured credentials: they
are registered here by the process that holds them (`register_credential`), and masked wherever
they appear as substrings. Findings name the rule, never the value.

The database's copy of the text rules is frozen in migrations/versions/0006_one_secret_spec.py
(same regular expressions: they are written in the syntax Python's `re` and PostgreSQL's share),
and tests/data/secret_cases.json is the one table of cases every layer's tests read.

The parts: `rules` (the rules, findings and secret keys), `patterns` (the text rules' regular
expressions), `cards` (Luhn and card spans), `credentials` (the configured ones), `text` and
`documents` (finding and redacting in text and in JSON). This package imports nothing else of
the project: every layer may use it.
"""

from __future__ import annotations

from orchestrator.sensitive.cards import is_luhn_valid, mask_card_number
from orchestrator.sensitive.credentials import (
    credentials_scope,
    holds_credential,
    register_credential,
    register_token,
)
from orchestrator.sensitive.documents import find_in_json, redact_json
from orchestrator.sensitive.rules import (
    CARD_NUMBER,
    CLIENT_SECRET,
    CREDENTIAL,
    CVC_KEY,
    HEADER_LINE,
    JWT,
    LAYERS,
    REDACTED,
    RULES,
    SECRET_KEY,
    Finding,
    Rule,
    key_rule,
)
from orchestrator.sensitive.text import find_in_text, printable_ref, redact_excerpt, redact_text

__all__ = [
    "CARD_NUMBER",
    "CLIENT_SECRET",
    "CREDENTIAL",
    "CVC_KEY",
    "HEADER_LINE",
    "JWT",
    "LAYERS",
    "REDACTED",
    "RULES",
    "SECRET_KEY",
    "Finding",
    "Rule",
    "credentials_scope",
    "find_in_json",
    "find_in_text",
    "holds_credential",
    "is_luhn_valid",
    "key_rule",
    "mask_card_number",
    "printable_ref",
    "redact_excerpt",
    "redact_json",
    "redact_text",
    "register_credential",
    "register_token",
]
