"""The console's `/metrics`: behind the console's authentication, readable by a viewer."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from orchestrator.api import Orchestrator
from orchestrator.config import Settings
from tests.console.conftest import BEARER_VIEWER, LOGINS, VIEWER, basic, console_client
from tests.fixtures.orchestrator import DECLINED, checkout_request


async def test_metrics_need_a_login_when_logins_are_configured(
    orch: Orchestrator, settings: Settings
) -> None:
    await orch.start(checkout_request(payment=DECLINED))
    async with console_client(orch, settings, **LOGINS) as client:
        refused = await client.get("/metrics")
        wrong = await client.get("/metrics", headers=basic((VIEWER[0], "not-it")))
        as_viewer = await client.get("/metrics", headers=basic(VIEWER))
        by_token = await client.get(
            "/metrics", headers={"Authorization": f"Bearer {BEARER_VIEWER}"}
        )
    assert refused.status_code == 401
    assert wrong.status_code == 401
    assert "orchestrator_checkouts" not in refused.text
    assert as_viewer.status_code == by_token.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(as_viewer.text)
        for s in family.samples
    }
    assert samples[("orchestrator_checkouts", (("state", "failed"),))] == 1
    assert samples[("orchestrator_database_up", ())] == 1
