"""OpenTelemetry spans per step and per Violet call, when the host traces (the `otel` extra).

A no-op without `opentelemetry-api` installed, and a non-recording span (the API's default)
until the host configures a tracer provider; either way nothing here changes what a checkout
does. `opentelemetry` is imported on the first span, never at start-up. Attributes are ids,
names, statuses and path templates only: never a body, a header, a card or a secret.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["mark_error", "span"]

_UNSET: Final = object()
_tracer: Any = _UNSET


def _get_tracer() -> Any:
    global _tracer
    if _tracer is _UNSET:
        try:
            from opentelemetry import trace
        except ImportError:
            _tracer = None
        else:
            _tracer = trace.get_tracer("orchestrator")
    return _tracer


@contextlib.contextmanager
def span(name: str, attributes: dict[str, str | int]) -> Iterator[Any]:
    """A span named `name` around the block (None inside when tracing is off). An exception
    leaving the block marks the span as an error with its type only (`error.type`): its message
    and traceback stay out of the host's traces."""
    tracer = _get_tracer()
    if tracer is None:
        yield None
        return
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
