"""OpenTelemetry spans per step and per Violet call, when the host traces (the `otel` extra).

A no-op without `opentelemetry-api` installed, and until the host configures a tracer
provider: the API's default provider only hands out non-recording spans, which show nobody
anything and cost ~7 us each more than no span (14 a checkout: ~0.1 ms of CPU), so none is
made. A provider configured later is picked up by the next span. Either way nothing here
changes what a checkout does. `opentelemetry` is imported on the first span, never at
start-up. Attributes are ids, names, statuses and path templates only: never a body, a header,
a card or a secret.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["mark_error", "span"]

_UNSET: Final = object()
#: A tracer pinned for every span (None: opentelemetry is not installed); unset, the tracer
#: of the provider the host configured, if any.
_tracer: Any = _UNSET
_trace_api: Any = None
#: The host's provider and its tracer, taken once per provider.
_provider_tracer: tuple[Any, Any] = (None, None)


def _get_tracer() -> Any:
    global _tracer, _trace_api, _provider_tracer
    if _tracer is not _UNSET:
        return _tracer
    if _trace_api is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _tracer = None
            return None
        _trace_api = trace
    provider = _trace_api.get_tracer_provider()
    if isinstance(provider, _trace_api.ProxyTracerProvider | _trace_api.NoOpTracerProvider):
        return None  # nothing configured: a span would record nothing
    if _provider_tracer[0] is not provider:
        _provider_tracer = (provider, provider.get_tracer("orchestrator"))
    return _provider_tracer[1]


#: What `span` returns when nothing traces: reusable, and cheaper than a generator's context.
_NO_SPAN: Final = contextlib.nullcontext()


def span(name: str, attributes: dict[str, str | int]) -> contextlib.AbstractContextManager[Any]:
    """A span named `name` around the block (None inside when tracing is off). An exception
    leaving the block marks the span as an error with its type only (`error.type`): its message
    and traceback stay out of the host's traces."""
    tracer = _get_tracer()
    if tracer is None:
        return _NO_SPAN
    return _recording(tracer, name, attributes)


@contextlib.contextmanager
def _recording(tracer: Any, name: str, attributes: dict[str, str | int]) -> Iterator[Any]:
    with tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            mark_error(current, type(exc).__name__)
            raise


def mark_error(current: Any, error_type: str) -> None:
    """Mark a span as failed with a type (an HTTP status, an exception's class), nothing more."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode

    current.set_attribute("error.type", error_type)
    current.set_status(Status(StatusCode.ERROR))
