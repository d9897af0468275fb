"""Secrets and card data never survive redaction, and harmless data is left alone."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.violet import RedactingFilter, redact, scrub_text
from orchestrator.violet.redact import REDACTED, is_luhn_valid

CARD = "4242424242424242"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4IiwiZXhwIjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJlLXNpZw"


def test_redact_sensitive_keys_deeply() -> None:
    body: dict[str, Any] = {
        "card_number": CARD,
        "card_cvc": "123",
        "cvc": "999",
        "password": "hunter2",
        "app_secret": "s3cr3t",
        "token": "tok_visa",
        "refresh_token": "rt-abc",
        "payment_intent_client_secret": "pi_1_secret_2",
        "nested": [{"client_secret": "cs", "X-Violet-Token": JWT, "x-violet-app-secret": "zz"}],
        "sku_id": 196777,
        "message": "ok",
    }
    out = redact(body)
    assert out["card_number"] == "****4242"
    for key in ("card_cvc", "cvc", "password", "app_secret", "token", "refresh_token"):
        assert out[key] == REDACTED
    assert out["payment_intent_client_secret"] == REDACTED
    assert out["nested"][0] == {
        "client_secret": REDACTED,
        "X-Violet-Token": REDACTED,
        "x-violet-app-secret": REDACTED,
    }
    assert out["sku_id"] == 196777 and out["message"] == "ok"
    # a deep copy: the input is untouched
    assert body["card_number"] == CARD and body["nested"][0]["client_secret"] == "cs"
    text = repr(out)
    for secret in (CARD, "123", "hunter2", "s3cr3t", "tok_visa", "rt-abc", "pi_1_secret_2", JWT):
        assert f"'{secret}'" not in text


def test_redact_scrubs_free_text_and_card_like_integers() -> None:
    out = redact({"message": f"card {CARD} declined", "weird": int(CARD), "ts": 1700000000001})
    assert CARD not in out["message"] and "declined" in out["message"]
    assert out["weird"] == REDACTED
    # a non-Luhn 13-digit timestamp is data, not a card
    assert not is_luhn_valid("1700000000001") and out["ts"] == 1700000000001


@pytest.mark.parametrize(
    "text",
    [
        f"number {CARD} here",
        "spaced 4242 4242 4242 4242 end",
        "dashed 4000-0000-0000-0002.",
        "amex 378282246310005",
        "3ds:4000002760003184",
    ],
)
def test_scrub_text_removes_luhn_valid_pans(text: str) -> None:
    out = scrub_text(text)
    assert REDACTED in out
    digits = "".join(ch for ch in out if ch.isdigit())
    assert len(digits) < 13


def test_scrub_text_keeps_ordinary_numbers() -> None:
    text = "cart 80001 order 1234567890123 total 1990 sku 196777"
    assert not is_luhn_valid("1234567890123")
    assert scrub_text(text) == text


def test_scrub_text_removes_jwts_and_client_secrets() -> None:
    out = scrub_text(f"token={JWT} and pi_3NsuaaK29KDiBVld1wGy3o22_secret_abcDEF123 ok")
    assert JWT not in out and "_secret_abc" not in out and out.endswith(" ok")


@given(st.from_regex(r"4[0-9]{15}", fullmatch=True))
def test_any_luhn_valid_16_digits_is_scrubbed(number: str) -> None:
    body = number[:-1]
    check = next(d for d in "0123456789" if is_luhn_valid(body + d))
    pan = body + check
    assert pan not in scrub_text(f"x {pan} y")


def test_logging_filter_scrubs_messages(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.violet.redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.DEBUG, logger="tests.violet.redact"):
        logger.debug("paid with %s using %s", CARD, JWT)
        logger.debug("nothing to see")
    assert CARD not in caplog.text and JWT not in caplog.text
    assert "nothing to see" in caplog.text and "paid with" in caplog.text
