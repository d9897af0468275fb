"""`SyncOrchestrator`: the same API for synchronous backends (Django, Flask, scripts).

It runs one event loop in a private thread and forwards each call to the async `Orchestrator`,
so connection pools and leases behave exactly as in async code.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import aio
from orchestrator.api import Orchestrator
from orchestrator.checkout import AuditEvent, Checkout, RetryReport
from orchestrator.config import Settings
from orchestrator.request import CardPaymentRequest, CheckoutRequest
from orchestrator.store.actions import BagAction
from orchestrator.store.changes import START, Change

T = TypeVar("T")


class SyncOrchestrator:
    """Blocking facade: ``with SyncOrchestrator(settings) as orch: orch.start(request)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = aio.new_event_loop()  # private to this thread: uvloop where installed
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="orchestrator-loop", daemon=True
        )
        self._thread.start()
        self._async = Orchestrator(*args, **kwargs)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def open(self) -> SyncOrchestrator:
        self._call(self._async.open())
        return self

    def close(self) -> None:
        try:
            self._call(self._async.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> SyncOrchestrator:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, request: CheckoutRequest | dict[str, Any], *, run: bool = True) -> Checkout:
        return self._call(self._async.start(request, run=run))

    def run(
        self, ref: uuid.UUID | str, *, retry_wait: float = 0.0, actor: str | None = None
    ) -> Checkout:
        return self._call(self._async.run(ref, retry_wait=retry_wait, actor=actor))

    def get(self, ref: uuid.UUID | str) -> Checkout:
        return self._call(self._async.get(ref))

    def history(self, ref: uuid.UUID | str) -> list[AuditEvent]:
        return self._call(self._async.history(ref))

    def cancel(self, ref: uuid.UUID | str, *, actor: str | None = None) -> Checkout:
        return self._call(self._async.cancel(ref, actor=actor))

    def confirm_payment(self, ref: uuid.UUID | str) -> Checkout:
        return self._call(self._async.confirm_payment(ref))

    def provide_payment(
        self, ref: uuid.UUID | str, payment: CardPaymentRequest | dict[str, Any]
    ) -> Checkout:
        return self._call(self._async.provide_payment(ref, payment))

    def payment_secret(self, ref: uuid.UUID | str) -> dict[str, str]:
        return self._call(self._async.payment_secret(ref))

    def retry(
        self,
        ref: uuid.UUID | str,
        *,
        actor: str | None = None,
        reason: str | None = None,
        run: bool = True,
    ) -> Checkout:
        return self._call(self._async.retry(ref, actor=actor, reason=reason, run=run))

    def retry_many(
        self,
        *,
        error_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        dry_run: bool = False,
        actor: str | None = None,
        reason: str | None = None,
    ) -> RetryReport:
        return self._call(
            self._async.retry_many(
                error_type=error_type,
                since=since,
                until=until,
                limit=limit,
                dry_run=dry_run,
                actor=actor,
                reason=reason,
            )
        )

    def changes(self, after: str = START, limit: int = 100) -> list[Change]:
        return self._call(self._async.changes(after, limit))

    def follow(
        self, after: str = START, *, limit: int = 100, poll_seconds: float = 5.0
    ) -> Iterator[Change]:
        """`Orchestrator.follow` as a blocking generator; closing it stops the follower."""
        changes = self._async.follow(after, limit=limit, poll_seconds=poll_seconds)

        async def next_change() -> Change:
            return await anext(changes)

        try:
            while True:
                try:
                    change = self._call(next_change())
                except StopAsyncIteration:
                    return
                yield change
        finally:
            self._call(changes.aclose())

    @property
    def settings(self) -> Settings:
        return self._async.settings

    @property
    def engine(self) -> AsyncEngine:
        """The async engine underneath (run it only on this facade's loop: prefer the methods)."""
        return self._async.engine

    def migrate(self) -> None:
        self._call(self._async.migrate())

    # -- after submit: a bag's cancel and refund -------------------------------------------

    def cancel_bag(
        self,
        ref: uuid.UUID | str,
        bag_id: int,
        *,
        actor: str,
        reason: str | None = None,
        reason_code: str | None = None,
    ) -> BagAction:
        return self._call(
            self._async.cancel_bag(ref, bag_id, actor=actor, reason=reason, reason_code=reason_code)
        )

    def refund_bag(
        self,
        ref: uuid.UUID | str,
        bag_id: int,
        *,
        actor: str,
        amount: int | None = None,
        skus: Sequence[tuple[int, int]] | None = None,
        reason: str | None = None,
    ) -> BagAction:
        return self._call(
            self._async.refund_bag(
                ref, bag_id, actor=actor, amount=amount, skus=skus, reason=reason
            )
        )

    def bag_actions(self, ref: uuid.UUID | str) -> list[BagAction]:
        return self._call(self._async.bag_actions(ref))
