"""The recovery job's waits: a sleep that `stop` cuts short, and opening with retry while the
database cannot be reached (used by the job and by the CLI before it starts one)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol, TypeVar

from orchestrator.errors import DatabaseUnavailable

__all__ = ["DB_RETRY_CAP_S", "Opens", "open_with_retry", "sleep_unless_stopped"]

#: One log name for the whole job, whichever of its modules writes (operators filter on it).
log = logging.getLogger("orchestrator.recovery")

#: Connection errors: retry with backoff from 0.5 s, doubling, capped here.
DB_RETRY_CAP_S = 10.0


async def sleep_unless_stopped(seconds: float, stop: asyncio.Event) -> None:
    """Sleep, waking early when `stop` is set."""
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


class Opens(Protocol):
    """What `open_with_retry` opens: `api.Orchestrator`, named here only by what it can do."""

    async def open(self) -> Any: ...


_Opened = TypeVar("_Opened", bound=Opens)


async def open_with_retry(
    orch: _Opened, *, give_up_after: float | None = 60.0, stop: asyncio.Event | None = None
) -> _Opened:
    """Open the orchestrator, retrying with backoff while the database cannot be reached.

    A schema that is not migrated is not retried (SchemaNotMigrated names the command to run).
    Raises DatabaseUnavailable once `give_up_after` seconds have passed (None: keep trying).
    """
    stop = stop or asyncio.Event()
    started = time.monotonic()
    delay = 0.5
    while True:
        try:
            await orch.open()
            return orch
        except DatabaseUnavailable as exc:
            elapsed = time.monotonic() - started
            if stop.is_set() or (give_up_after is not None and elapsed + delay > give_up_after):
                raise
            log.warning("%s; retrying in %.1f s", exc, delay)
            await sleep_unless_stopped(delay, stop)
            delay = min(delay * 2, DB_RETRY_CAP_S)
