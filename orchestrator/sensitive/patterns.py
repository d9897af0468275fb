"""The text rules' regular expressions, and the cheap tests that decide whether to run them.

Written in the regular-expression syntax Python's `re` and PostgreSQL's AREs share: the
migration (migrations/versions/0006_one_secret_spec.py) holds a frozen copy of these patterns
and runs them (character classes with \\uXXXX escapes, no \\s or \\d).
"""

from __future__ import annotations

import re
from typing import Final

DIGIT: Final = "[0-9\\uff10-\\uff19]"
# Between two digit groups: 1-3 of these (spaces of every width, tab, line breaks, dots,
# slashes, dashes and their full-width forms). A dash stays last in the class.
SEPARATOR: Final = (
    "[ \\t\\r\\n\\u00a0\\u2007\\u202f\\u3000./\\u2010-\\u2015\\u2212\\uff0d\\uff0e\\uff0f-]"
)
CARD_PRECHECK: Final = f"{DIGIT}(?:{SEPARATOR}{{0,3}}{DIGIT}){{12}}"
DIGIT_RUN: Final = f"(?<!{DIGIT}){DIGIT}+(?:{SEPARATOR}{{1,3}}{DIGIT}+)*"
UUID: Final = (
    "(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)
JWT_PATTERN: Final = "eyJ[A-Za-z0-9_-]{4,}\\.[A-Za-z0-9_-]{2,}\\.[A-Za-z0-9_-]*"
# Case-insensitive. A plain group, not "(?:x...": SQLAlchemy would read ":x" in the migration
# as a bind parameter. The value starts with a character that is no space and no `<` (HTML).
HEADER_NAME: Final = "(x-violet-[a-z0-9-]+|authorization)[ \\t]*[:=][ \\t]*"
HEADER_LINE_PATTERN: Final = f"{HEADER_NAME}(?!\\[redacted\\])[^ \\t\\r\\n<]"

FULL_WIDTH_DIGITS: Final = "".join(chr(0xFF10 + d) for d in range(10))
FULL_WIDTH: Final = str.maketrans(FULL_WIDTH_DIGITS, "0123456789")
CARD_PRECHECK_RE: Final = re.compile(CARD_PRECHECK)
DIGIT_RUN_RE: Final = re.compile(DIGIT_RUN)
DIGITS_RE: Final = re.compile(f"{DIGIT}+")
UUID_RE: Final = re.compile(UUID)
JWT_RE: Final = re.compile(JWT_PATTERN)
CLIENT_SECRET_RE: Final = re.compile("[A-Za-z0-9_]*_secret_[A-Za-z0-9_]*", re.IGNORECASE)
HEADER_LINE_RE: Final = re.compile(HEADER_LINE_PATTERN, re.IGNORECASE)
HEADER_VALUE_RE: Final = re.compile(
    f"({HEADER_NAME})(?!\\[redacted\\])[^ \\t\\r\\n<][^\\r\\n<]*", re.IGNORECASE
)
# Cheap tests first (a digit at all; plain substring tests on the lower-cased text): most
# strings the client redacts are short names, codes and messages that hold none of the rules.
_ANY_DIGIT_RE: Final = re.compile(DIGIT)


# No rule finds anything in fewer characters: `_secret_` and a credential take 8, a header line
# 12, a JWT 11, a card number 13.
SHORTEST: Final = 8


def may_hold_card(text: str) -> bool:
    """Whether `text` may hold a card number (13 digits with short separators between)."""
    return (
        len(text) >= 13
        and _ANY_DIGIT_RE.search(text) is not None
        and CARD_PRECHECK_RE.search(text) is not None
    )


def may_hold_other(text: str) -> bool:
    """Whether a rule other than the card number's may apply (all need one of these)."""
    lowered = text.lower()
    return (
        "_secret_" in lowered
        or "eyJ" in text
        or "x-violet-" in lowered
        or "authorization" in lowered
    )
