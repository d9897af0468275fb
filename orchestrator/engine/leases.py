"""Keeps the leases of the checkouts this process is driving alive while slow calls run.

One background task per orchestrator renews every held lease in a single statement every third
of the lease time, instead of a timer per call: cheap on the hot path. A lease that could not be
renewed was taken over; the fenced write of that checkout will then be refused (LeaseLost).
It also remembers, on the local clock, until when each renewed lease is surely ours: the send
gate of a submit that follows a long read counts on it (drive.py, violet/gate.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator

from orchestrator.clock import local_clock
from orchestrator.engine.ports import EngineStore
from orchestrator.store import database
from orchestrator.store.records import CheckoutRow, Event

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Tracks the checkouts held by this worker and renews their leases periodically."""

    def __init__(self, repo: EngineStore, *, worker: str, lease_seconds: float) -> None:
        self.repo = repo
        self.worker = worker
        self.lease_seconds = lease_seconds
        self._held: dict[uuid.UUID, int] = {}
        self._renewed_until: dict[uuid.UUID, float] = {}
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def holding(self, checkout_id: uuid.UUID) -> Iterator[None]:
        """Renew this checkout's lease for as long as the block runs."""
        self._held[checkout_id] = self._held.get(checkout_id, 0) + 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._renew_forever())
        try:
            yield
        finally:
            count = self._held.pop(checkout_id, 1) - 1
            if count > 0:
                self._held[checkout_id] = count
            else:
                self._renewed_until.pop(checkout_id, None)

    def renewed_until(self, checkout_id: uuid.UUID) -> float | None:
        """Until when (`orchestrator.clock.local_clock`) the last renewal surely keeps the lease
        ours; None if none renewed it during the current hold."""
        return self._renewed_until.get(checkout_id)

    async def release(self, row: CheckoutRow, *, due_in: float | None) -> None:
        """Give a claimed lease back untouched (a fenced write), so nobody waits for its expiry;
        `due_in` None leaves a waiting row to outside input, 0 makes it due at once."""
        await self.repo.write(
            row,
            [Event("lease_released", to_state=row.state, detail={"due_in_s": due_in})],
            worker=self.worker,
            lease_seconds=self.lease_seconds,
            keep_lease=False,
            due_in=due_in,
        )

    async def _renew_forever(self) -> None:
        interval = self.lease_seconds / 3
        while self._held:
            await asyncio.sleep(interval)
            ids = list(self._held)
            if not ids:
                break
            sent_at = local_clock()  # the renewal's now() is no earlier
            try:
                renewed = await self.repo.renew(
                    ids, worker=self.worker, lease_seconds=self.lease_seconds
                )
            except Exception as exc:  # must not kill the worker; the fenced write will tell
                if database.is_database_error(exc):  # an outage: reported where it matters
                    log.info("lease renewal failed (%s)", database.error_reason(exc))
                else:
                    log.exception("lease renewal failed")
                continue
            for checkout_id in renewed:
                if checkout_id in self._held:
                    self._renewed_until[checkout_id] = sent_at + self.lease_seconds
            for lost in set(ids) - renewed:
                if lost in self._held:
                    log.debug("checkout %s: lease no longer ours (released or taken over)", lost)

    async def close(self) -> None:
        self._held.clear()
        self._renewed_until.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
