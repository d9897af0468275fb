"""The sync facade gives blocking code the same API, over HTTP to a served sandbox."""

from __future__ import annotations

import pytest

from orchestrator import CheckoutNotFound, SyncOrchestrator
from tests.fixtures.orchestrator import TOKEN, checkout_request, make_settings
from tests.fixtures.sandbox import HttpSandbox


def test_sync_facade_starts_reads_and_reports_history(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    settings = make_settings(database_url, http_sandbox.base_url)
    with SyncOrchestrator(settings) as orch:
        checkout = orch.start(checkout_request(payment=TOKEN))
        assert checkout.state == "submitted", checkout.last_error
        assert orch.get(checkout.app_order_id).id == checkout.id
        assert orch.history(checkout.id)[-1].to_state == "submitted"
        with pytest.raises(CheckoutNotFound):
            orch.get("missing")
