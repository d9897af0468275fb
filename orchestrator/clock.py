"""The local clock that bounds how old a step may be when its request leaves (violet/gate.py).

Host wall clocks are not trusted for that (they step, and may disagree with the database's), so
elapsed time is measured on a clock that never goes back. Linux's CLOCK_BOOTTIME also keeps
counting while the machine is suspended (a laptop lid, a suspended VM), where CLOCK_MONOTONIC
stops: a worker resumed after a suspend must see the whole pause, or it would send a request the
reconciler already counts as never sent. Elsewhere `time.monotonic` is the closest there is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Final

__all__ = ["local_clock"]

_BOOTTIME: Final = getattr(time, "CLOCK_BOOTTIME", None)

#: Seconds on a clock that never goes back (and, on Linux, counts suspended time); only the
#: difference between two readings in one process means anything.
local_clock: Callable[[], float] = (
    time.monotonic if _BOOTTIME is None else partial(time.clock_gettime, _BOOTTIME)
)
