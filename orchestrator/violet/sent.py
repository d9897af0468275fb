"""Tell a caller the moment its next Violet request has left the process.

The runner commits some writes behind the next Violet call (runner.py). Started before the call,
such a write spends its client CPU before the request is even sent, and the call waits for it:
at one checkout at a time that cost more than half of what running the write behind saved
(bench/critical_path.py). So the write waits for this signal instead: the request is on the wire,
Violet is working on it, and the write fills the wait. A context variable, like the audit
capture in calls.py: concurrent checkouts never see each other's signal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

__all__ = ["request_leaving", "request_sent_hook", "when_request_sent"]

TraceHook = Callable[[str, dict[str, Any]], Awaitable[None]]


class _Once:
    """An httpcore `trace` extension that calls back once the request body has been sent."""

    __slots__ = ("callback", "fired")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.fired = False

    def fire(self) -> None:
        if not self.fired:
            self.fired = True
            self.callback()

    async def trace(self, name: str, info: dict[str, Any]) -> None:
        if name.endswith("send_request_body.complete"):
            self.fire()


_pending: ContextVar[_Once | None] = ContextVar("violet_request_sent", default=None)


@contextlib.contextmanager
def when_request_sent(callback: Callable[[], None]) -> Iterator[None]:
    """Call `callback` once: when a Violet request made in this block has been sent, or when
    the block ends if none got that far (an error before sending, a transport without traces)."""
    once = _Once(callback)
    token = _pending.set(once)
    try:
        yield
    finally:
        _pending.reset(token)
        once.fire()


def request_sent_hook() -> TraceHook | None:
    """The trace extension for the client's next request (None: nobody is waiting)."""
    once = _pending.get()
    return None if once is None or once.fired else once.trace


def request_leaving() -> None:
    """Signal now: the request goes to a transport that reports no trace events (a host's own
    transport, an in-process ASGI app), so handing it over is as close to "sent" as it gets."""
    once = _pending.get()
    if once is not None:
        once.fire()
