"""What the receiver reads from a webhook: the signature, the ids, the event type's spelling."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from pydantic import SecretStr

from orchestrator.errors import ConfigError
from orchestrator.webhooks import events
from orchestrator.webhooks.signature import Verifier, sign

BODY = b'{"id": 42, "status": "COMPLETED"}'


def test_sign_is_base64_hmac_sha256_of_the_raw_body_with_the_secret() -> None:
    expected = base64.b64encode(hmac.new(b"k3y-secret", BODY, hashlib.sha256).digest()).decode()
    assert sign(BODY, "k3y-secret") == expected
    assert sign(BODY, SecretStr("k3y-secret")) == expected


def test_verify_accepts_every_configured_secret_and_nothing_else() -> None:
    verifier = Verifier(["old-secret", SecretStr("new-secret")])
    assert verifier.verify(BODY, sign(BODY, "old-secret"))
    assert verifier.verify(BODY, sign(BODY, "new-secret"))
    assert not verifier.verify(BODY, sign(BODY, "other-secret"))
    assert not verifier.verify(BODY + b" ", sign(BODY, "new-secret"))


@pytest.mark.parametrize("signature", [None, "", "not base64!", "AAAA", "A" * 500, "=" * 44])
def test_verify_refuses_missing_and_malformed_signatures(signature: str | None) -> None:
    assert not Verifier(["a-secret"]).verify(BODY, signature)


def test_verify_accepts_a_signature_without_padding() -> None:
    assert Verifier(["a-secret"]).verify(BODY, sign(BODY, "a-secret").rstrip("="))


def test_a_verifier_needs_a_secret() -> None:
    with pytest.raises(ConfigError, match="VIOLET_WEBHOOK_SECRETS"):
        Verifier(["", SecretStr("")])


def _headers(**values: str) -> dict[str, str]:
    base = {"x-violet-event-id": "evt-1", "x-violet-topic": "ORDER_UPDATED"}
    base.update({key.replace("_", "-"): value for key, value in values.items()})
    return base


@pytest.mark.parametrize("topic", ["ORDER_CANCELED", "ORDER_CANCELLED", "order_cancelled"])
def test_both_cancel_spellings_are_one_event_type(topic: str) -> None:
    event = events.parse(_headers(**{"x_violet_topic": topic}), {"id": 7})
    assert event.event_type == "ORDER_CANCELED"


ORDER = {"id": 77, "bags": [{"id": 88, "status": "ACCEPTED"}]}


def test_the_order_id_comes_from_the_signed_body_the_headers_only_agree_with_it() -> None:
    event = events.parse(_headers(x_violet_order_id="77", x_violet_bag_id="88"), ORDER)
    assert (event.violet_order_id, event.bag_id, event.state) == (77, 88, "pending")
    assert events.parse(_headers(), {"id": 99}).violet_order_id == 99


@pytest.mark.parametrize("header", ["78", "abc", "0", " 7 7"])
def test_an_order_header_contradicting_the_signed_body_makes_the_event_refused(
    header: str,
) -> None:
    """Violet signs the body only: a replayed body under another order's header is stored
    ignored with why (never applied), its order the body's."""
    event = events.parse(_headers(x_violet_order_id=header), ORDER)
    assert (event.violet_order_id, event.state) == (77, "ignored")
    assert event.reason is not None and "X-Violet-Order-Id" in event.reason


def test_a_bag_header_the_signed_body_does_not_back_is_dropped() -> None:
    event = events.parse(_headers(x_violet_bag_id="89"), ORDER)
    assert (event.bag_id, event.state) == (None, "pending")


def test_an_order_header_is_not_an_order_id_for_an_event_without_one_in_its_body() -> None:
    event = events.parse(_headers(x_violet_order_id="77"), {"status": "COMPLETED"})
    assert (event.violet_order_id, event.state) == (None, "ignored")


def test_merchant_events_keep_the_merchant_id() -> None:
    event = events.parse(_headers(x_violet_topic="MERCHANT_DISABLED"), {"id": 5, "name": "m"})
    assert (event.event_type, event.merchant_id, event.violet_order_id) == (
        "MERCHANT_DISABLED",
        5,
        None,
    )


@pytest.mark.parametrize("value", ["abc", "-1", "0", "1e3", str(2**63), True, None, 1.5])
def test_ids_that_are_not_violet_ids_are_left_out(value: Any) -> None:
    assert events.parse(_headers(), {"id": value}).violet_order_id is None


@pytest.mark.parametrize(
    "headers",
    [
        {"x-violet-topic": "ORDER_UPDATED"},
        {"x-violet-event-id": "evt-1"},
        {"x-violet-event-id": "evt 1", "x-violet-topic": "ORDER_UPDATED"},
        {"x-violet-event-id": "e" * 201, "x-violet-topic": "ORDER_UPDATED"},
        {"x-violet-event-id": "evt-1", "x-violet-topic": "order.updated"},
    ],
)
def test_an_event_needs_a_well_formed_id_and_type(headers: dict[str, str]) -> None:
    with pytest.raises(events.BadEvent):
        events.parse(headers, {})
