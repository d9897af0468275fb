"""The webhook send loop: a background task in the sandbox's own event loop.

Deliveries go out one at a time, oldest due first, so a test sees them in a deterministic order
unless it armed a delay or reorder fault. A non-2xx answer, a timeout or a refused connection
is retried on Violet's schedule (``RETRY_DELAYS`` times ``webhook_time_scale``) up to 10
attempts; more than 50 failures within 30 minutes pause the webhook for 1 h, then 3 h, then
24 h, and a fourth time disable it (README §5), all on the same compressed clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import httpx

from orchestrator.sandbox.webhooks import RETRY_DELAYS, Delivery, Webhook

if TYPE_CHECKING:
    from orchestrator.sandbox.state import SandboxState

logger = logging.getLogger(__name__)

FAILURE_WINDOW = 1800.0
FAILURES_BEFORE_PAUSE = 50
PAUSES: tuple[float, ...] = (3600.0, 10800.0, 86400.0)


class Sender:
    """Starts itself on the first event; ``kick`` wakes it when something new is queued."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def kick(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside a loop (a synchronous unit test): nothing to wake
            return
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name="sandbox-webhook-sender")
        assert self._wake is not None
        self._wake.set()

    async def _run(self) -> None:
        hub = self.state.webhooks
        assert self._wake is not None
        wake = self._wake
        async with httpx.AsyncClient(follow_redirects=False) as client:
            while True:
                delivery, wait = hub.next_due(time.monotonic())
                if delivery is None:
                    wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), timeout=wait)
                    continue
                try:
                    await self._attempt(client, delivery)
                except Exception:  # the loop must outlive any one delivery
                    logger.exception("webhook delivery %s failed unexpectedly", delivery.seq)

    async def _attempt(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        state = self.state
        hub = state.webhooks
        generation = hub.generation
        hook = delivery.webhook
        if hook.status == "PAUSED":
            hook.status = "ACTIVE"
            hook.failures.clear()
        delivery.event.status = "IN_PROGRESS" if delivery.primary else delivery.event.status
        started = time.time()
        status_code: int | None = None
        error: str | None = None
        text: str | None = None
        try:
            response = await client.post(
                hook.url,
                content=delivery.event.body,
                headers=hub.headers(delivery, state.config.app_secret),
                timeout=state.config.webhook_timeout_seconds,
            )
            status_code, text = response.status_code, response.text
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if hub.generation != generation:  # reset while in flight: forget it
            return
        done = hub.record(delivery, started, status_code, error, text)
        if status_code is not None and 200 <= status_code < 300:
            return
        scale = state.config.webhook_time_scale
        now = time.monotonic()
        if not done:
            delivery.due = now + RETRY_DELAYS[delivery.attempts - 1] * scale
        count_failure(hook, now, scale)


def count_failure(hook: Webhook, now: float, scale: float) -> None:
    """Count one failed attempt; too many within the window pause the webhook, then disable it."""
    hook.failures.append(now)
    while hook.failures and hook.failures[0] < now - FAILURE_WINDOW * scale:
        hook.failures.popleft()
    if len(hook.failures) <= FAILURES_BEFORE_PAUSE:
        return
    hook.failures.clear()
    if hook.pause_rounds >= len(PAUSES):
        hook.status = "DISABLED"
        logger.info("sandbox webhook %s disabled after %s pauses", hook.id, hook.pause_rounds)
        return
    hook.status = "PAUSED"
    hook.paused_until = now + PAUSES[hook.pause_rounds] * scale
    hook.pause_rounds += 1
