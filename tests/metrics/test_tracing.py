"""With the host tracing (opentelemetry-sdk), a checkout yields a span per step and per Violet
call, with ids, names and statuses, and no card data or secret in any attribute."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import tracing
from orchestrator.api import Orchestrator
from orchestrator.sandbox import SANDBOX_CREDENTIALS
from tests.fixtures.orchestrator import DECLINED, VISA, checkout_request

CARD = {**VISA, "card_cvc": "7391"}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # The global provider can be set once per process: the tracer is taken from this one.
    tracing._tracer = provider.get_tracer("orchestrator")
    try:
        yield exporter
    finally:
        tracing._tracer = tracing._UNSET
        provider.shutdown()


async def test_a_checkout_traces_its_steps_and_calls(
    orch: Orchestrator, spans: InMemorySpanExporter
) -> None:
    done = await orch.start(checkout_request(payment=CARD))
    assert done.state == "submitted"
    finished = spans.get_finished_spans()
    steps = [s for s in finished if s.name.startswith("orchestrator.step ")]
    calls = [s for s in finished if s.name.startswith("violet ")]
    assert {s.attributes["orchestrator.checkout_id"] for s in steps} == {str(done.id)}
    assert "orchestrator.step submit" in {s.name for s in steps}
    submit = next(s for s in calls if s.name == "violet submit")
    assert submit.attributes["url.template"] == "/checkout/cart/{id}/submit"
    assert submit.attributes["http.response.status_code"] == 200
    # Each call is inside its step's span.
    step_ids = {s.context.span_id for s in steps}
    assert all(
        c.parent is not None and c.parent.span_id in step_ids
        for c in calls
        if c.name != "violet login"
    )
    secrets = [
        CARD["card_number"],
        CARD["card_cvc"],
        str(SANDBOX_CREDENTIALS["app_secret"]),
        str(SANDBOX_CREDENTIALS["password"]),
    ]
    for s in finished:
        text = repr(dict(s.attributes or {})) + s.name + repr([e.attributes for e in s.events])
        for secret in secrets:
            assert secret not in text, (s.name, secret)


async def test_a_failed_call_marks_its_span_with_the_error_type_only(
    orch: Orchestrator, spans: InMemorySpanExporter
) -> None:
    declined = await orch.start(checkout_request(payment=DECLINED))
    assert declined.state == "failed"
    errors = [
        s for s in spans.get_finished_spans() if s.status.status_code == trace.StatusCode.ERROR
    ]
    assert errors
    for s in errors:
        assert s.status.description is None
        assert s.events == ()  # no exception event: no message, no traceback
        assert s.attributes is not None and "error.type" in s.attributes


def test_without_opentelemetry_a_span_is_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_tracer", None)
    with tracing.span("anything", {"a": 1}) as current:
        assert current is None


def test_no_span_is_made_until_the_host_configures_a_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API's default provider hands out spans that record nothing: none is made (a cost
    with no reader). A provider the host sets later is used by the next span."""
    monkeypatch.setattr(tracing, "_tracer", tracing._UNSET)
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    with tracing.span("unconfigured", {"a": 1}) as current:
        assert current is None
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    with tracing.span("configured", {"a": 1}) as current:
        assert current is not None and current.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == ["configured"]
    provider.shutdown()
