"""Nothing the client emits (logs, call records, exceptions) carries a secret or a card number."""

from __future__ import annotations

import logging
import re

import pytest

from orchestrator.sandbox import SANDBOX_CREDENTIALS
from orchestrator.violet import (
    CallRecord,
    IntentPayment,
    VioletClient,
    VioletError,
    capture_calls,
)
from tests.fixtures.violet_sandbox_client import (
    Sandbox,
    card,
    no_retry_waits,
    ready_to_submit,
    sandbox,
    violet,
)

__all__ = ["no_retry_waits", "sandbox", "violet"]

CVC = "947"
CARDS = ["4242424242424242", "4000000000000002", "4000002760003184", "4000000000000127"]


def _assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text, f"leaked: {secret[:4]}...{secret[-4:]}"
    # a whole token: not inside a latency ("12.947 ms"), a timestamp or a random id or secret
    assert not re.search(rf"(?<![\w.:]){CVC}(?!\w)", text), "CVC leaked"


async def test_nothing_secret_leaves_the_client(
    sandbox: Sandbox, violet: VioletClient, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[VioletError] = []
    records: list[CallRecord] = []
    with caplog.at_level(logging.DEBUG):
        with capture_calls() as calls:
            # a successful card checkout, a decline, 3-D Secure, a bad CVC, an intent payment
            ok = await ready_to_submit(violet, [196777], card(CARDS[0], CVC), app_order_id="s1")
            await violet.submit(ok.id)
            declined = await ready_to_submit(
                violet, [196777], card(CARDS[1], CVC), app_order_id="s2"
            )
            try:
                await violet.submit(declined.id)
            except VioletError as exc:
                errors.append(exc)
            three_ds = await ready_to_submit(
                violet, [196777], card(CARDS[2], CVC), app_order_id="s3"
            )
            pending = await violet.submit(three_ds.id)
            try:
                await ready_to_submit(violet, [196777], card(CARDS[3], CVC), app_order_id="s4")
            except VioletError as exc:
                errors.append(exc)
            intent = await ready_to_submit(violet, [196777], IntentPayment(), app_order_id="s5")
            # a token expiry mid-flow puts login, refresh and a 401 in the logs
            await sandbox.control.expire_tokens()
            await violet.get_cart(intent.id)
        records.extend(calls)
        async with sandbox.client(password="not-the-password") as bad:
            try:
                await bad.get_cart(ok.id)
            except VioletError as exc:
                errors.append(exc)

    assert len(errors) == 3 and {type(e).__name__ for e in errors} >= {"VioletPaymentDeclined"}
    assert violet._auth is not None and violet._refresh_token is not None
    assert pending.payment_intent_client_secret is not None
    assert intent.payment_intent_client_secret is not None
    secrets = [
        *CARDS,
        str(SANDBOX_CREDENTIALS["app_secret"]),
        str(SANDBOX_CREDENTIALS["password"]),
        "not-the-password",
        violet._auth.token,
        violet._refresh_token.get_secret_value(),
        pending.payment_intent_client_secret.get_secret_value(),
        intent.payment_intent_client_secret.get_secret_value(),
    ]
    assert {r.op for r in records} >= {"login", "refresh", "payment", "submit", "get_cart"}
    assert any(r.request and r.request.get("card_number") == "****4242" for r in records)
    assert not any(r.request and "card_cvc" in r.request for r in records)
    _assert_clean(repr(records), secrets)
    for err in errors:
        _assert_clean(f"{err} {err!r} {err.body!r} {err.message}", secrets)
    _assert_clean(caplog.text, secrets)
    assert "violet payment POST" in caplog.text  # the DEBUG line per call is there
    _assert_clean(repr(intent) + repr(pending) + intent.model_dump_json(), secrets)
