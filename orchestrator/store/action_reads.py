"""Reads of bag actions: a checkout's actions, what is known of a bag, the unsettled ones.

No lease is taken: an action's row only moves forward, and a settled one is frozen.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.store.action_records import (
    ACTION_COLUMNS,
    REQUESTED,
    SENT,
    BagAction,
    BagNews,
    Unsettled,
)

__all__ = ["actions_of", "bag_news", "db_now", "unsettled"]


# -- reads --------------------------------------------------------------------------------------


async def actions_of(engine: AsyncEngine, checkout_id: uuid.UUID) -> list[BagAction]:
    """A checkout's actions, oldest first."""
    sql = (
        f"SELECT {ACTION_COLUMNS} FROM bag_actions WHERE checkout_id = %(id)s "
        "ORDER BY requested_at, id"
    )
    async with engine.connect() as conn:
        rows = (await conn.exec_driver_sql(sql, {"id": checkout_id})).mappings().all()
    return [BagAction.from_mapping(r) for r in rows]


async def bag_news(engine: AsyncEngine, checkout_id: uuid.UUID, bag_id: int) -> BagNews | None:
    """What `checkout_bags` holds of the bag (None: no news of it yet)."""
    sql = (
        "SELECT status, refunded_amount FROM checkout_bags "
        "WHERE checkout_id = %(id)s AND bag_id = %(bag_id)s"
    )
    async with engine.connect() as conn:
        found = (
            (await conn.exec_driver_sql(sql, {"id": checkout_id, "bag_id": bag_id}))
            .mappings()
            .first()
        )
    if found is None:
        return None
    return BagNews(status=found["status"], refunded_amount=int(found["refunded_amount"]))


_UNSETTLED_SQL = f"""
SELECT {", ".join("a." + c.strip() for c in ACTION_COLUMNS.split(","))},
       c.violet_order_id, c.app_order_id
FROM bag_actions a JOIN checkouts c ON c.id = a.checkout_id
WHERE a.state IN ('{REQUESTED}', '{SENT}')
  AND (c.lease_owner IS NULL OR c.lease_expires_at < now())
  AND CASE a.state
      WHEN '{SENT}' THEN COALESCE(a.sent_at, a.requested_at)
      ELSE COALESCE(a.send_by, a.requested_at) END
      < now() - %(settle_s)s * interval '1 second'
ORDER BY a.requested_at
LIMIT %(limit)s
"""


async def unsettled(engine: AsyncEngine, *, settle_seconds: float, limit: int) -> list[Unsettled]:
    """Open actions nobody is working on (the checkout's lease is free or expired) whose request,
    if it left at all, left over `settle_seconds` ago: `sent` ones by `sent_at`, `requested` ones
    (their process stopped before it recorded an answer) by `send_by`, the last instant their
    request could leave."""
    params = {"settle_s": settle_seconds, "limit": limit}
    async with engine.connect() as conn:
        rows = (await conn.exec_driver_sql(_UNSETTLED_SQL, params)).mappings().all()
    return [
        Unsettled(BagAction.from_mapping(r), r["violet_order_id"], r["app_order_id"]) for r in rows
    ]


async def db_now(engine: AsyncEngine) -> datetime:
    """The database's clock (every bound here is on it)."""
    async with engine.connect() as conn:
        value: datetime = (await conn.exec_driver_sql("SELECT now()")).scalar_one()
    return value
