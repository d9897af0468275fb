"""The event loops this package owns (the CLI's, the sync facade's thread): uvloop where installed.

uvloop took 7-12% off the client CPU of a checkout in the bench (C = 1, L = 0: 4.8-5.4 ->
4.4-4.8 ms for the bare flow, 9.6 -> 8.9-9.2 ms persisted); the 10,000-checkout recovery bench
showed no difference beyond its noise. An async library user keeps whatever loop their
application runs.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    """`asyncio.run`, on a uvloop loop when uvloop is importable (not on Windows)."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop where uvloop is importable, else asyncio's (for loops this package owns:
    the CLI's and the sync facade's private thread)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows, or a trimmed install
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


#: Young-generation threshold for processes this package owns. A process driving many checkouts
#: allocates ~3x the container objects of the bare Violet flow per checkout (115 vs 35 gen-0
#: collections per 500 checkouts at L = 20 ms, C = 64), and those collections cost it ~11% of
#: its CPU; at 50,000 they all but vanish (docs/performance.md). Cycles are still collected.
GC_THRESHOLD = (50_000, 50, 1000)


def tune_gc() -> None:
    """Raise the cyclic GC's thresholds for a process of ours (the CLI): never for a host's."""
    gc.set_threshold(*GC_THRESHOLD)
