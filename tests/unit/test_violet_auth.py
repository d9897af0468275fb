"""JWT expiry is read from the token itself, and refresh happens shortly before it."""

from __future__ import annotations

import base64
import time

from orchestrator.violet.auth import TokenState, decode_jwt_claims, refresh_margin
from tests.fixtures.violet import make_jwt


def test_decode_claims_without_padding() -> None:
    token = make_jwt({"sub": "x", "exp": 1700000000, "iat": 1699913600, "scopes": ["a"]})
    assert decode_jwt_claims(token)["exp"] == 1700000000
    assert decode_jwt_claims("not-a-jwt") == {}
    assert decode_jwt_claims("a.!!!.c") == {}
    assert decode_jwt_claims("a." + base64.urlsafe_b64encode(b"[1]").decode() + ".c") == {}


def test_refresh_margin_is_five_minutes_or_ten_percent() -> None:
    assert refresh_margin(86400) == 300
    assert refresh_margin(60) == 6
    assert refresh_margin(-5) == 0


def test_token_state_deadlines_follow_exp() -> None:
    now = time.time()
    state = TokenState.from_token(make_jwt({"exp": now + 86400, "iat": now}))
    mono = time.monotonic()
    assert not state.needs_refresh(mono)
    assert state.needs_refresh(mono + 86400 - 299)
    assert not state.is_expired(mono + 86400 - 299)
    assert state.is_expired(mono + 86401)


def test_short_lived_token_refreshes_at_ninety_percent() -> None:
    now = time.time()
    state = TokenState.from_token(make_jwt({"exp": now + 10, "iat": now}))
    mono = time.monotonic()
    assert not state.needs_refresh(mono + 8.5)
    assert state.needs_refresh(mono + 9.5)


def test_expired_token_needs_refresh_now() -> None:
    now = time.time()
    state = TokenState.from_token(make_jwt({"exp": now - 5, "iat": now - 65}))
    assert state.needs_refresh() and state.is_expired()


def test_token_without_exp_is_used_until_refused() -> None:
    state = TokenState.from_token("opaque-token")
    assert not state.needs_refresh(time.monotonic() + 10**9)
