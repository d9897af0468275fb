"""How `Orchestrator.open` assembles its parts: the engine, the step-write pool and the `Worker`.

Kept apart from the class so the front door reads as the operations callers use, while the
settings-to-parts mapping (pool sizes, timeouts, retry policy) sits in one place.
"""

from __future__ import annotations

import os
import socket
import uuid

from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.config import Settings
from orchestrator.engine.crashpoints import CrashPoints
from orchestrator.engine.leases import LeaseKeeper
from orchestrator.engine.runner import RetryPolicy, Runner
from orchestrator.engine.worker import Worker
from orchestrator.request import CardPaymentRequest
from orchestrator.store import database
from orchestrator.store.budgets import MerchantBudgets, unpaced_ttl
from orchestrator.store.repository import Repository
from orchestrator.violet import CardPayment, VioletClient

__all__ = [
    "build_worker",
    "card_payment",
    "create_engine",
    "database_url",
    "default_worker_id",
    "open_pool",
]


def default_worker_id() -> str:
    """host:pid:random — unique per process, readable in the audit trail."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def database_url(settings: Settings) -> str:
    """The configured database, or the embedded one (migrated, since nobody else will)."""
    url = database.resolve_database_url(settings)
    if not settings.database_url:
        database.migrate(url)
    return url


def create_engine(settings: Settings, url: str) -> AsyncEngine:
    """The engine for schema checks and the occasional query.

    The step writes have their own psycopg pool, so a small pool here keeps the server's
    connection count low.
    """
    return database.create_engine(
        url,
        pool_size=2,
        lock_timeout=settings.db_lock_timeout,
        statement_timeout=settings.db_statement_timeout,
    )


async def open_pool(settings: Settings, engine: AsyncEngine) -> AsyncConnectionPool:
    """The step writes' pool, opened.

    A lock held elsewhere or a stuck statement fails the write (a database error: the checkout
    is kept for recovery) instead of blocking the worker for good.
    """
    timeouts = database.session_options(
        engine.url,
        lock_timeout=settings.db_lock_timeout,
        statement_timeout=settings.db_statement_timeout,
    )
    pool = AsyncConnectionPool(
        database.libpq_conninfo(engine.url),
        min_size=1,
        max_size=settings.db_pool_size,
        open=False,
        kwargs={
            "autocommit": True,
            "application_name": "orchestrator",
            "connect_timeout": 5,
            **timeouts,
        },
    )
    await pool.open(wait=True, timeout=30)
    return pool


def build_worker(
    settings: Settings,
    *,
    worker_id: str,
    engine: AsyncEngine,
    pool: AsyncConnectionPool,
    client: VioletClient,
    cards: dict[uuid.UUID, CardPayment],
    crash: CrashPoints | None,
) -> Worker:
    """The repository, lease keeper and runner behind one `Worker`, shared with the jobs."""
    repo = Repository(engine, pool, write_slots=settings.db_write_slots)
    leases = LeaseKeeper(repo, worker=worker_id, lease_seconds=settings.lease_seconds)
    runner = Runner(
        repo,
        client,
        worker=worker_id,
        lease_seconds=settings.lease_seconds,
        settle_seconds=settings.submit_settle_seconds,
        retry=RetryPolicy(
            max_attempts=settings.max_attempts,
            base=settings.backoff_base,
            cap=settings.backoff_cap,
            max_retry_after=settings.max_retry_after,
        ),
        max_recoveries=settings.max_recoveries,
        crash=crash,
        overlap_writes=settings.overlap_writes,
        outcome_wait=settings.submit_outcome_wait,
        leases=leases,
        budgets=(
            MerchantBudgets(repo, unpaced_ttl=unpaced_ttl(settings.merchant_budget_wait))
            if settings.merchant_budgets
            else None
        ),
        budget_wait=settings.merchant_budget_wait,
    )
    return Worker(
        repo,
        client,
        leases,
        runner,
        id=worker_id,
        lease_seconds=settings.lease_seconds,
        max_retry_after=settings.max_retry_after,
        cards=cards,
        action_settle_seconds=settings.action_settle_seconds,
        merchant_budgets=settings.merchant_budgets,
        budget_wait=settings.merchant_budget_wait,
    )


def card_payment(payment: CardPaymentRequest) -> CardPayment:
    """A card as the worker's memory holds it (in memory only, never persisted)."""
    return CardPayment(
        card_number=payment.card_number,
        card_cvc=payment.card_cvc,
        card_exp_month=payment.card_exp_month,
        card_exp_year=payment.card_exp_year,
        card_postal_code=payment.card_postal_code,
    )
