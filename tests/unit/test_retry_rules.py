"""Which failed checkouts a retry reopens: the one rule, as a table of what `last_error` holds
after each way a checkout ends (engine/retries.py, decisions.py, events.py)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import states
from orchestrator.engine.retry_rules import refusal
from orchestrator.store.records import Failure

AT_SUBMIT = Failure(states.PRICED, states.SUBMIT)


def _error(cls: str, kind: str, **more: Any) -> dict[str, Any]:
    return {"class": cls, "type": kind, "message": "...", "status": 503, "step": "submit", **more}


RETRIED = [
    ("retries exhausted", _error("permanent", "retries_exhausted")),
    ("retries exhausted, no status", _error("permanent", "retries_exhausted", status=None)),
    ("poison", _error("permanent", "poison", status=None)),
    ("credentials refused", _error("config", "credentials_refused", status=401)),
    ("401 after a token refresh", _error("auth", "VioletAuthError", status=401)),
    ("a fault of ours", _error("internal", "RuntimeError", status=None)),
    ("Violet unreachable", _error("retryable", "VioletConnectError", status=None)),
    ("Violet 5xx", _error("retryable", "VioletServerError", status=503)),
    ("answer lost", _error("outcome_unknown", "VioletOutcomeUnknown", status=None)),
]


@pytest.mark.parametrize(("case", "error"), RETRIED, ids=[c for c, _ in RETRIED])
def test_an_operational_failure_is_retried(case: str, error: dict[str, Any]) -> None:
    assert refusal(states.FAILED, error, AT_SUBMIT) is None, case


REFUSED = [
    (
        "declined at payment",
        _error("permanent", "card_declined", step="apply_payment", decline_code="card_declined"),
        "the card was declined (card_declined): Violet's final word; start a new checkout",
    ),
    (
        "declined with a reason",
        _error("permanent", "card_declined", decline_code="insufficient_funds"),
        "the card was declined (card_declined: insufficient_funds): Violet's final word",
    ),
    (
        "out of stock at create_cart",
        _error(
            "permanent", "EXTERNAL_ADD_ITEM", step="create_cart", status=200, message="sold out"
        ),
        "Violet refused create_cart (EXTERNAL_ADD_ITEM) 'sold out': Violet's final word",
    ),
    (
        "every bag rejected at submit",
        _error("permanent", "rejected", status=200, message="every bag was rejected"),
        "Violet rejected the submit (rejected) 'every bag was rejected': Violet's final word",
    ),
    (
        "validation",
        _error("permanent", "VioletValidationError", step="apply_customer", status=400),
        "Violet refused apply_customer (VioletValidationError)",
    ),
    (
        "our request cannot succeed",
        _error("permanent", "shipping_address_required", step="apply_customer", status=None),
        "the request cannot succeed at apply_customer (shipping_address_required)",
    ),
    ("no error recorded", None, "no error was recorded"),
    ("an unknown class", _error("bogus", "x"), "not known to be operational"),
]


@pytest.mark.parametrize(("case", "error", "why"), REFUSED, ids=[c for c, _, _ in REFUSED])
def test_violets_final_word_is_refused_and_says_why(
    case: str, error: dict[str, Any] | None, why: str
) -> None:
    found = refusal(states.FAILED, error, AT_SUBMIT)
    assert found is not None and why in found, (case, found)


@pytest.mark.parametrize(
    ("state", "why"),
    [
        (states.SUBMITTED, "Violet holds the order"),
        (states.CANCELED, "stays canceled"),
        (states.AWAITING_PAYMENT, "waiting for input, not failed"),
        (states.PRICED, "not failed: it is still being worked on"),
        (states.NEW, "not failed"),
    ],
)
def test_a_checkout_not_failed_is_refused(state: str, why: str) -> None:
    found = refusal(state, _error("permanent", "retries_exhausted"), AT_SUBMIT)
    assert found is not None and why in found


@pytest.mark.parametrize(
    ("failure", "why"),
    [
        (None, "records no failure"),
        (Failure(states.REQUIRES_ACTION, None), "no retry reopens it"),
        (Failure(states.PRICED, None), "no step pending"),
    ],
)
def test_a_failure_with_nowhere_to_reopen_is_refused(failure: Failure | None, why: str) -> None:
    found = refusal(states.FAILED, _error("permanent", "retries_exhausted"), failure)
    assert found is not None and why in found


def test_a_long_violet_message_is_quoted_short() -> None:
    error = _error("permanent", "rejected", status=200, message="x" * 5000)
    found = refusal(states.FAILED, error, AT_SUBMIT)
    assert found is not None and len(found) < 400
