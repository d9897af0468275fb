"""Writes left running behind the next Violet call (`overlap_writes`).

Between two overwrite steps (customer -> shipping -> token payment -> price) the outcome commit
of one step, which is also the intent commit of the next, runs *behind* the next call instead of
before it: a crash that loses it leaves the previous step in flight, and its reconcile rule
re-applies it before the next one runs again, so nothing depends on it being durable first. Such
a write starts once the next call's request has been sent (violet/sent.py), so it fills the wait
for Violet's answer instead of delaying the request. Create-cart's outcome (the Violet cart id),
the submit's intent and a card payment's intent never run behind: they are committed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from orchestrator.engine.crashpoints import CrashPoints
from orchestrator.states import APPLY_CUSTOMER, APPLY_PAYMENT, APPLY_SHIPPING, PRICE
from orchestrator.store.records import CheckoutRow
from orchestrator.violet import when_request_sent

#: Steps whose outcome may be committed while the next overwrite step's call runs: their own
#: reconcile rule redoes (or, for a card, re-reads) them, so losing the write loses nothing.
_REDO_SAFE = frozenset({APPLY_CUSTOMER, APPLY_SHIPPING, APPLY_PAYMENT})
#: Steps whose call may start before their intent is durable (overwrite semantics, no data held
#: only in memory); create_cart and submit are never among them.
_MAY_START_BEHIND = frozenset({APPLY_SHIPPING, APPLY_PAYMENT, PRICE})


def may_write_behind(row: CheckoutRow, done_step: str) -> bool:
    """Whether the write of `done_step`'s outcome (and the row's next intent) may run behind."""
    if done_step not in _REDO_SAFE or row.pending_step not in _MAY_START_BEHIND:
        return False
    # A card lives only in this process: its intent is committed before Violet sees it.
    return not (row.pending_step == APPLY_PAYMENT and row.request["payment"]["type"] == "card")


class WriteBehind:
    """The writes running behind a call, one at most per checkout."""

    def __init__(self, crash: CrashPoints) -> None:
        self.crash = crash
        # Per checkout: the task, the step whose outcome it commits, and the gate it waits
        # behind until the call's request has been sent.
        self._behind: dict[uuid.UUID, _BehindWrite] = {}

    def start(self, row: CheckoutRow, step: str, write: Coroutine[Any, Any, None]) -> None:
        """Leave `write` (of `step`'s outcome) to run once the row's next request is sent."""
        loop = asyncio.get_running_loop()
        gate: asyncio.Future[None] = loop.create_future()
        task = loop.create_task(_after(gate, write))
        self._behind[row.id] = _BehindWrite(task, step, gate)

    def holds(self, row: CheckoutRow) -> bool:
        """Whether a write of the row is running (or waiting to run) behind a call."""
        return row.id in self._behind

    def follows(self, row: CheckoutRow) -> contextlib.AbstractContextManager[None]:
        """Around a call: let the row's write waiting behind it go once the request is sent."""
        pending = self._behind.get(row.id)
        if pending is None or pending.gate.done():
            return contextlib.nullcontext()
        return when_request_sent(pending.open)

    async def settle(self, row: CheckoutRow) -> None:
        """Wait for the write running behind a call, if any (raises what the write raised)."""
        pending = self._behind.pop(row.id, None)
        if pending is None:
            return
        pending.open()  # no call is coming (or it is over): the write goes now
        try:
            await asyncio.shield(pending.task)
        except asyncio.CancelledError:
            # Cancelled while waiting: the write goes on by itself; nobody is left to read it.
            pending.task.add_done_callback(_retrieve)
            raise
        self.crash.hit(f"after_outcome_commit:{pending.step}")


@dataclass(slots=True)
class _BehindWrite:
    """A write left running behind a call; it waits at `gate` until the call's request left."""

    task: asyncio.Task[None]
    step: str
    gate: asyncio.Future[None]

    def open(self) -> None:
        if not self.gate.done():
            self.gate.set_result(None)


async def _after(gate: asyncio.Future[None], write: Coroutine[Any, Any, None]) -> None:
    try:
        await gate
    except BaseException:
        write.close()  # never started: nothing was sent
        raise
    await write


def _retrieve(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(BaseException):
        task.result()
