"""Finding and redacting secrets in JSON values: the text rules over every key, string and
number, and the key rules (a secret key's value must be redacted, null or empty)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from typing import Any, Final

from orchestrator.sensitive.cards import mask_card_number
from orchestrator.sensitive.credentials import on_change as on_credentials_change
from orchestrator.sensitive.rules import CARD_KEYS, REDACTED, Finding, Rule, key_rule
from orchestrator.sensitive.text import find_in_text, redact_text


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


on_credentials_change(_key.cache_clear)


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
