"""`Worker`: what one process drives checkouts with, built once and shared by its users.

The front door (`api.Orchestrator`) builds it on open; the jobs (`recovery`, `verify`) take it
as an argument, so they use the engine and the store without reaching into the front door. One
object, not copies: a card given to this process stays usable by this process's recovery.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from orchestrator import states
from orchestrator.engine.leases import LeaseKeeper
from orchestrator.engine.runner import DriveResult, Runner
from orchestrator.errors import DatabaseUnavailable
from orchestrator.store import database
from orchestrator.store.records import CheckoutRow
from orchestrator.store.repository import Repository
from orchestrator.violet import CardPayment, VioletClient


@dataclass(slots=True, eq=False)
class Worker:
    """The repository, Violet client, lease keeper and runner of one worker, plus the card data
    it holds in memory (only while its checkout has not passed payment)."""

    repo: Repository
    client: VioletClient
    leases: LeaseKeeper
    runner: Runner
    #: host:pid:random, the lease owner written on every row this worker claims.
    id: str
    lease_seconds: float
    #: Longest Retry-After honoured: it also caps how long claims wait on the shared throttle.
    max_retry_after: float
    cards: dict[uuid.UUID, CardPayment] = field(default_factory=dict)
    #: How long a sent cancel or refund may take to show on its bag before a read settles it
    #: as not applied (engine/actions.py `reconcile_actions`).
    action_settle_seconds: float = 900.0
    #: Per-merchant rate budgets on (store/budgets.py): claims spread over merchants and pass
    #: over those whose budget has no turn within `budget_wait` seconds.
    merchant_budgets: bool = False
    budget_wait: float = 2.0

    async def drive(self, row: CheckoutRow, *, intent_committed: bool) -> DriveResult:
        """Drive a checkout whose lease this worker holds, renewing the lease meanwhile.

        A database failure becomes `DatabaseUnavailable` (the checkout is kept for recovery);
        a 429 not charged to merchant budgets closes the global throttle for every worker.
        """
        try:
            with self.leases.holding(row.id):
                result = await self.runner.drive(
                    row, card=self.cards.get(row.id), intent_committed=intent_committed
                )
        except Exception as exc:
            if isinstance(exc, DatabaseUnavailable) or not database.is_database_error(exc):
                raise
            raise DatabaseUnavailable(
                f"database unavailable ({database.error_reason(exc)}); checkout "
                f"{row.app_order_id} is kept and will be resumed by `orchestrator recover` "
                "once the database answers"
            ) from exc
        if result.throttle_seconds:
            await self.repo.throttle("global", result.throttle_seconds)
        self.forget_card_if_past_payment(row)
        return result

    def forget_card_if_past_payment(self, row: CheckoutRow) -> None:
        """Drop a held card once its checkout, as just read, can no longer send it to Violet
        (another process may have paid, submitted, failed or canceled it)."""
        if row.state not in states.CARD_STATES:
            self.cards.pop(row.id, None)

    async def forget_cards_past_payment(self) -> None:
        """Drop every held card whose checkout has moved past payment or gone (one query): a card
        whose checkout another process finished is otherwise kept until this one looks at it."""
        held = list(self.cards)
        current = await self.repo.states_of(held)
        for checkout_id in held:
            if current.get(checkout_id) not in states.CARD_STATES:
                self.cards.pop(checkout_id, None)


__all__ = ["Worker"]
