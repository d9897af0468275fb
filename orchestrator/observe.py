"""Where the code reports what it did, for whoever counts it (metrics/collector.py).

A base module (it imports nothing), so the Violet client, the store, the engine and the webhook
receiver may all report here without depending on the metrics package or prometheus_client.

Nothing is counted until `install` is called with a sink: the calls below then cost one global
read each. Labels are bounded on purpose: a Violet call is named by its path template
(`/checkout/cart/{id}/payment`, never a raw id), a verdict or outcome by its kind.
"""

from __future__ import annotations

import re
from typing import Final, Protocol

__all__ = [
    "Sink",
    "endpoint_of",
    "install",
    "reconcile_verdict",
    "takeover",
    "uninstall",
    "violet_call",
    "webhook_answer",
]


class Sink(Protocol):
    """What counts the events (metrics.collector.ProcessMetrics)."""

    def violet_call(self, endpoint: str, method: str, status: str, seconds: float) -> None: ...
    def reconcile_verdict(self, verdict: str) -> None: ...
    def takeover(self, of: str) -> None: ...
    def webhook_answer(self, outcome: str) -> None: ...


_sink: Sink | None = None

_ID_SEGMENT: Final = re.compile(r"/(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27})(?=/|$)")


def install(sink: Sink) -> None:
    """Send every event of this process to `sink` from now on (one sink per process)."""
    global _sink
    _sink = sink


def uninstall() -> None:
    global _sink
    _sink = None


def endpoint_of(path: str) -> str:
    """A Violet path as its template: numeric and UUID segments become `{id}`."""
    return _ID_SEGMENT.sub("/{id}", path.split("?", 1)[0])


def violet_call(path: str, method: str, status: int | str, seconds: float) -> None:
    """One exchange with Violet: its HTTP status, or the error that left it unanswered."""
    sink = _sink
    if sink is not None:
        sink.violet_call(endpoint_of(path), method, str(status), seconds)


def reconcile_verdict(verdict: str) -> None:
    """What a reconcile of a step in flight decided (advance, redo, defer, pending, park, fail)."""
    sink = _sink
    if sink is not None:
        sink.reconcile_verdict(verdict)


def takeover(of: str) -> None:
    """A lease taken over from a worker whose lease had expired (`checkout` or `bag_action`)."""
    sink = _sink
    if sink is not None:
        sink.takeover(of)


def webhook_answer(outcome: str) -> None:
    """How the receiver answered one delivery (stored, duplicate, unsigned, ...)."""
    sink = _sink
    if sink is not None:
        sink.webhook_answer(outcome)
