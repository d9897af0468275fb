"""The read-back job: fill the gaps webhooks leave, by reading stale orders from Violet.

Violet's delivery is best-effort (up to 10 attempts, then given up), so a bag can move at Violet
with no event reaching us. Each run picks the submitted checkouts with a bag not final whose last
news (the newest bag row heard from, or the finish when there is none) is older than
`older_than` seconds, stalest first, reads at most `budget` of them from Violet
(`GET /orders/{id}`, never holding a transaction meanwhile) and records each answer through the
same function as a webhook (`store.bags.record`, source `read_back`): under the checkout's lease,
bags forward only. A read-back that finds nothing new still marks its bags heard from, so the
next run reads other orders first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from orchestrator.engine.worker import Worker
from orchestrator.store import bags
from orchestrator.violet import VioletError

log = logging.getLogger(__name__)

#: Orders read from Violet at once.
CONCURRENCY = 4


@dataclass(slots=True)
class ReadBackReport:
    """What one run did; every order read is counted once."""

    #: Stale orders found (at most the budget).
    stale: int = 0
    read: int = 0
    #: Orders whose read changed something (a bag moved, amounts, Violet's order status).
    changed: int = 0
    #: Read, but the checkout was busy: left for the next run.
    busy: int = 0
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "stale": self.stale,
            "read": self.read,
            "changed": self.changed,
            "busy": self.busy,
            "unreadable": self.unreadable,
            "duration_s": round(self.duration_s, 3),
        }


async def read_back(
    worker: Worker, pool: AsyncConnectionPool, *, older_than: float, budget: int
) -> ReadBackReport:
    """One read-back run (see the module docstring); at most `budget` calls to Violet."""
    started = time.monotonic()
    report = ReadBackReport()
    if budget <= 0:
        return report
    async with pool.connection() as conn:
        stale = await bags.stale_orders(conn, older_than=older_than, limit=budget)
    report.stale = len(stale)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(found: dict[str, Any]) -> None:
        async with slots:
            try:
                order = await worker.client.get_order(found["violet_order_id"])
            except VioletError as exc:
                report.unreadable.append(
                    {
                        "checkout_id": str(found["id"]),
                        "app_order_id": found["app_order_id"],
                        "error": f"{exc.classification}: {type(exc).__name__}",
                    }
                )
                return
            report.read += 1
            body = order.model_dump(mode="json")
            done = await bags.record_read(pool, worker.id, found["id"], body, via="readback")
            if done.busy is not None:
                report.busy += 1
            elif done.moved or done.violet_status is not None:
                report.changed += 1

    await asyncio.gather(*(one(found) for found in stale))
    report.duration_s = time.monotonic() - started
    log.info("read-back: %s", report.to_json())
    return report


__all__ = ["ReadBackReport", "read_back"]
