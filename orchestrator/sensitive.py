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
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

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
    "mask_card_number",
    "printable_ref",
    "redact_excerpt",
    "redact_json",
    "redact_text",
    "register_credential",
    "register_token",
]

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


# -- text rules ---------------------------------------------------------------------------------
# Written in the regular-expression syntax Python's `re` and PostgreSQL's AREs share: the
# migration runs the same patterns (character classes with \uXXXX escapes, no \s or \d).

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
_FULL_WIDTH: Final = str.maketrans(FULL_WIDTH_DIGITS, "0123456789")
_CARD_PRECHECK_RE: Final = re.compile(CARD_PRECHECK)
_DIGIT_RUN_RE: Final = re.compile(DIGIT_RUN)
_DIGITS_RE: Final = re.compile(f"{DIGIT}+")
_UUID_RE: Final = re.compile(UUID)
_JWT_RE: Final = re.compile(JWT_PATTERN)
_CLIENT_SECRET_RE: Final = re.compile("[A-Za-z0-9_]*_secret_[A-Za-z0-9_]*", re.IGNORECASE)
_HEADER_LINE_RE: Final = re.compile(HEADER_LINE_PATTERN, re.IGNORECASE)
_HEADER_VALUE_RE: Final = re.compile(
    f"({HEADER_NAME})(?!\\[redacted\\])[^ \\t\\r\\n<][^\\r\\n<]*", re.IGNORECASE
)
# Cheap tests first (a digit at all; plain substring tests on the lower-cased text): most
# strings the client redacts are short names, codes and messages that hold none of the rules.
_ANY_DIGIT_RE: Final = re.compile(DIGIT)


# No rule finds anything in fewer characters: `_secret_` and a credential take 8, a header line
# 12, a JWT 11, a card number 13.
_SHORTEST: Final = 8


def _may_hold_card(text: str) -> bool:
    return (
        len(text) >= 13
        and _ANY_DIGIT_RE.search(text) is not None
        and _CARD_PRECHECK_RE.search(text) is not None
    )


def _may_hold_other(text: str) -> bool:
    """Whether a rule other than the card number's may apply (all need one of these)."""
    lowered = text.lower()
    return (
        "_secret_" in lowered
        or "eyJ" in text
        or "x-violet-" in lowered
        or "authorization" in lowered
    )


def is_luhn_valid(digits: str) -> bool:
    """The Luhn checksum every card number satisfies (ASCII digits)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_spans(text: str) -> Iterator[tuple[int, int, int]]:
    """(start, end, digit count) of each card number: of every run of digit groups, the windows
    of whole groups holding 13-19 digits are checked, from the left, shortest first (the order
    the database checks them in); after a hit the search goes on behind it."""
    shadow = _UUID_RE.sub(lambda m: "u" * len(m.group()), text) if "-" in text else text
    for run in _DIGIT_RUN_RE.finditer(shadow):
        groups = [
            (m.start(), m.end(), m.group().translate(_FULL_WIDTH))
            for m in _DIGITS_RE.finditer(shadow, run.start(), run.end())
        ]
        if sum(len(g[2]) for g in groups) < 13:
            continue
        first = 0
        while first < len(groups):
            digits = ""
            hit = None
            for last in range(first, len(groups)):
                digits += groups[last][2]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and is_luhn_valid(digits):
                    hit = last
                    break
            if hit is None:
                first += 1
                continue
            yield groups[first][0], groups[hit][1], len(digits)
            first = hit + 1


# -- configured credentials -------------------------------------------------------------------

# Shorter values are not masked as substrings: they occur inside ordinary words (a password
# "pw" would mask every "pw" in every log line). Real app secrets and tokens are far longer.
MIN_CREDENTIAL_LENGTH: Final = 8
assert MIN_CREDENTIAL_LENGTH >= _SHORTEST  # find_in_text skips shorter text altogether
# Rotating tokens: the most recent ones stay masked (an old token can still be echoed for a
# while); a handful covers any refresh rhythm without letting the list grow in a long process.
_KEPT_TOKENS: Final = 8
_lock = threading.Lock()
_fixed: set[str] = set()
_tokens: OrderedDict[str, None] = OrderedDict()
_credentials: tuple[str, ...] = ()


def _secret_value(value: Any) -> str:
    """The text of a str or SecretStr; "" for anything else, or for text too short to mask."""
    getter = getattr(value, "get_secret_value", None)
    if callable(getter):
        value = getter()
    return value if isinstance(value, str) and len(value) >= MIN_CREDENTIAL_LENGTH else ""


def _publish() -> None:
    global _credentials
    # Longest first: a credential containing another is masked whole.
    _credentials = tuple(sorted({*_fixed, *_tokens}, key=len, reverse=True))
    _key.cache_clear()


def register_credential(value: Any) -> None:
    """Mask `value` (a str or SecretStr: an app secret, a password) wherever it appears from
    now on, in this process: redaction, log handlers, request validation. Values shorter than
    `MIN_CREDENTIAL_LENGTH` are skipped."""
    text = _secret_value(value)
    if not text:
        return
    with _lock:
        if text not in _fixed:
            _fixed.add(text)
            _publish()


def register_token(value: Any) -> None:
    """Like `register_credential`, for a token that rotates (only the most recent are kept)."""
    text = _secret_value(value)
    if not text:
        return
    with _lock:
        _tokens[text] = None
        _tokens.move_to_end(text)
        while len(_tokens) > _KEPT_TOKENS:
            _tokens.popitem(last=False)
        _publish()


@contextlib.contextmanager
def credentials_scope() -> Iterator[None]:
    """Forget, when the block ends, the credentials registered inside it (tests; a host that
    runs clients of several configurations one after another)."""
    with _lock:
        fixed, tokens = set(_fixed), OrderedDict(_tokens)
    try:
        yield
    finally:
        with _lock:
            _fixed.clear()
            _fixed.update(fixed)
            _tokens.clear()
            _tokens.update(tokens)
            _publish()


def holds_credential(text: str) -> bool:
    """Whether `text` holds a configured credential (a substring test per credential)."""
    return any(value in text for value in _credentials)


# -- finding and redacting text ---------------------------------------------------------------


def find_in_text(text: str, *, credentials: bool = True) -> Finding | None:
    """The first rule `text` breaks (rules in the database's order, then credentials), or None."""
    if len(text) < _SHORTEST:
        return None
    if _may_hold_card(text):
        for _start, _end, count in _card_spans(text):
            return Finding(CARD_NUMBER, f"a Luhn-valid {count}-digit number")
    if _may_hold_other(text):
        if "_secret_" in text.lower():
            return Finding(CLIENT_SECRET, CLIENT_SECRET.what)
        if "eyJ" in text and _JWT_RE.search(text):
            return Finding(JWT, JWT.what)
        if _HEADER_LINE_RE.search(text):
            return Finding(HEADER_LINE, HEADER_LINE.what)
    if credentials and holds_credential(text):
        return Finding(CREDENTIAL, CREDENTIAL.what)
    return None


def _mask_cards(text: str) -> str:
    out = []
    position = 0
    for start, end, _count in _card_spans(text):
        out.append(text[position:start])
        out.append(REDACTED)
        position = end
    if not out:
        return text
    out.append(text[position:])
    return "".join(out)


def redact_text(text: str) -> str:
    """`text` with everything a text rule finds replaced by ``[REDACTED]`` (a header keeps its
    name, up to the colon). Cheap when there is nothing to find: a digit scan (and the card
    pre-check if there is one) and substring tests, one per configured credential."""
    if len(text) < _SHORTEST:
        return text
    if _may_hold_card(text):
        text = _mask_cards(text)
    if _may_hold_other(text):
        text = _CLIENT_SECRET_RE.sub(REDACTED, text)
        if "eyJ" in text:
            text = _JWT_RE.sub(REDACTED, text)
        text = _HEADER_VALUE_RE.sub(lambda m: m.group(1) + REDACTED, text)
    for value in _credentials:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_excerpt(text: str, limit: int) -> str:
    """The first `limit` characters of `text`, redacted. Redacted before the cut (a credential
    or card across the cut is masked whole) and after it (a cut group can complete a number)."""
    slack = 256 + max((len(value) for value in _credentials), default=0)
    return redact_text(redact_text(text[: limit + slack])[:limit])


def mask_card_number(value: Any) -> str:
    """``"4242424242424242"`` -> ``"****4242"``: the last four are what support needs."""
    digits = "".join(ch for ch in str(value).translate(_FULL_WIDTH) if "0" <= ch <= "9")
    return "****" + digits[-4:] if len(digits) >= 4 else REDACTED


def printable_ref(ref: Any) -> str:
    """A reference a user typed, safe to print back (a card number pasted as an id is not)."""
    text = str(ref)
    return "(hidden: it looks like a secret)" if find_in_text(text) is not None else text


# -- JSON ---------------------------------------------------------------------------------------


def _is_redacted(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.upper() in (REDACTED, ""))


_MASK_RE: Final = re.compile("[*xX -]*[0-9]{0,4}")


def _number_text(value: Any) -> str | None:
    """How a JSON number reads as text, when it could hold a card number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if abs(value) >= 10**12 else None
    if isinstance(value, float) and math.isfinite(value):  # 0.4242424242424242 reads as digits
        return repr(value)
    return None


def _strings(value: Any) -> Iterator[str]:
    """Every key, string and number-as-text in a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value
    else:
        text = _number_text(value)
        if text is not None:
            yield text


@functools.lru_cache(maxsize=4096)
def _key(key: str) -> tuple[str, Rule | None]:
    """A JSON key redacted as text, and its key rule: bodies repeat the same few keys, so this
    is remembered (and forgotten when the credentials change)."""
    return redact_text(key), key_rule(key)


def _satisfies_key_rule(key: str, value: Any) -> bool:
    """A guarded key's value is redacted, null or empty, or (a card number's) a mask."""
    if _is_redacted(value):
        return True
    return key.lower() in CARD_KEYS and isinstance(value, str) and bool(_MASK_RE.fullmatch(value))


def _key_finding(value: Any) -> Finding | None:
    if isinstance(value, dict):
        for key, item in value.items():
            rule = key_rule(key) if isinstance(key, str) else None
            if rule is not None and not _satisfies_key_rule(key, item):
                return Finding(rule, f"a key {key.lower()[:64]!r} with a value")
            found = _key_finding(item)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for item in value:
            found = _key_finding(item)
            if found is not None:
                return found
    return None


def find_in_json(value: Any, *, credentials: bool = True) -> Finding | None:
    """The first rule a JSON value breaks: the text rules over all of its keys, strings and
    numbers (rule by rule, as the database reads the whole document), then the key rules."""
    texts = list(_strings(value))
    joined = "\x00".join(texts)  # NUL separates: it is never a separator of digit groups
    found = find_in_text(joined, credentials=credentials)
    return found if found is not None else _key_finding(value)


def redact_json(value: Any) -> Any:
    """A deep copy of a JSON value with everything the rules find redacted: values of secret
    keys become ``[REDACTED]`` (card numbers keep their last four), keys and strings are
    redacted as text, and a number that is a card number becomes ``[REDACTED]``."""
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str):
                name, rule = _key(key)
                if rule is not None and not _satisfies_key_rule(key, item):
                    card = key.lower() in CARD_KEYS
                    out[name] = mask_card_number(item) if card else REDACTED
                    continue
                out[name] = redact_json(item)
            else:
                out[key] = redact_json(item)
        return out
    if isinstance(value, list | tuple):
        return [redact_json(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    text = _number_text(value)
    if text is not None and find_in_text(text, credentials=False) is not None:
        return REDACTED
    return value
