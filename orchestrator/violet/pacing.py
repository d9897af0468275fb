"""Who decides when a call to a merchant's platform may leave: the caller's pacer, if any.

Violet relays each merchant platform's rate limit as a 429. The client does not know the merchants
nor the shared budgets (they live in the database); the engine sets a pacer around a checkout's
calls, and the transport asks it before each call that reaches a platform (`Op.platform`) and
tells it of each 429. A context variable, like gate.py: concurrent checkouts never see each
other's pacer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol

from orchestrator.violet.ops import Op

__all__ = ["Pacer", "current_pacer", "paced_by"]


class Pacer(Protocol):
    """Budgets for the calls of one caller (one checkout's drive)."""

    async def admit(self, op: Op) -> None:
        """Return when `op` may be sent (after a short wait, maybe); raise `VioletBudgetClosed`
        when its turn is further than the caller may wait (nothing is sent)."""

    async def rate_limited(self, op: Op, retry_after: float | None) -> None:
        """Violet answered `op` 429: the budgets it drew on learn of it."""


_pacer: ContextVar[Pacer | None] = ContextVar("violet_pacer", default=None)


@contextlib.contextmanager
def paced_by(pacer: Pacer | None) -> Iterator[None]:
    """Pace the Violet calls made in this block with `pacer` (None: unpaced)."""
    token = _pacer.set(pacer)
    try:
        yield
    finally:
        _pacer.reset(token)


def current_pacer() -> Pacer | None:
    return _pacer.get()
