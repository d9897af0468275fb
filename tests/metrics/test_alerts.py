"""docs/alerts.yml parses as a Prometheus rule file, and every expression names only metrics
the endpoint exports (scraped over HTTP, so a renamed metric breaks this test)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.api import Orchestrator
from orchestrator.metrics.serve import serving_metrics

RULES = Path(__file__).resolve().parents[2] / "docs" / "alerts.yml"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


async def exported_names(orch: Orchestrator) -> set[str]:
    async with (
        serving_metrics(orch.engine, "127.0.0.1", 0) as port,
        httpx.AsyncClient() as client,
    ):
        answer = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert answer.status_code == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(answer.text):
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


async def test_every_alert_names_exported_metrics(orch: Orchestrator) -> None:
    rules = yaml.safe_load(RULES.read_text())
    exported = await exported_names(orch)
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in alerts}
    assert len(names) == len(alerts), "alert names repeat"
    for rule in alerts:
        assert {"alert", "expr"} <= set(rule), rule
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        used = set(re.findall(r"\borchestrator_\w+", rule["expr"]))
        assert used, f"{rule['alert']} names no metric"
        assert used <= exported, f"{rule['alert']}: {sorted(used - exported)} not exported"
    for wanted in (
        "orchestrator_oldest_open_checkout_age_seconds",
        "orchestrator_steps_unknown_outcome",
        "orchestrator_lease_takeovers_total",
        "orchestrator_webhook_answers_total",
    ):
        assert any(wanted in rule["expr"] for rule in alerts), wanted
