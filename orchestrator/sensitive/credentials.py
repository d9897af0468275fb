"""Configured credentials (app secret, password, tokens): registered by the process that holds
them and masked wherever they appear as substrings. The database cannot know them."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Final

from orchestrator.sensitive.patterns import SHORTEST

# Shorter values are not masked as substrings: they occur inside ordinary words (a password
# "pw" would mask every "pw" in every log line). Real app secrets and tokens are far longer.
MIN_CREDENTIAL_LENGTH: Final = 8
assert MIN_CREDENTIAL_LENGTH >= SHORTEST  # find_in_text skips shorter text altogether
# Rotating tokens: the most recent ones stay masked (an old token can still be echoed for a
# while); a handful covers any refresh rhythm without letting the list grow in a long process.
_KEPT_TOKENS: Final = 8
_lock = threading.Lock()
_fixed: set[str] = set()
_tokens: OrderedDict[str, None] = OrderedDict()
_credentials: tuple[str, ...] = ()
# Called (under the lock) whenever the credentials change: caches of redacted text forget.
_on_change: list[Callable[[], None]] = []


def current() -> tuple[str, ...]:
    """The credentials masked now, longest first (a credential containing another is masked
    whole). A tuple replaced on each change, so a reader needs no lock."""
    return _credentials


def on_change(callback: Callable[[], None]) -> None:
    """Call `callback` whenever the credentials change (a cache of redacted text forgets)."""
    _on_change.append(callback)


def _secret_value(value: Any) -> str:
    """The text of a str or SecretStr; "" for anything else, or for text too short to mask."""
    getter = getattr(value, "get_secret_value", None)
    if callable(getter):
        value = getter()
    return value if isinstance(value, str) and len(value) >= MIN_CREDENTIAL_LENGTH else ""


def _publish() -> None:
    global _credentials
    _credentials = tuple(sorted({*_fixed, *_tokens}, key=len, reverse=True))
    for callback in _on_change:
        callback()


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
