"""After submit: a bag's cancel and refund at the front door (the work is engine/actions.py).

A mixin, like the changes feed: `Orchestrator` gains these methods with their public signatures
and docstrings kept here, next to each other. It needs only the worker and the row lookup.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.store.actions import BagAction

if TYPE_CHECKING:
    from orchestrator.engine.worker import Worker
    from orchestrator.store.records import CheckoutRow

__all__ = ["BagCommands"]


class BagCommands:
    """`cancel_bag`, `refund_bag` and `bag_actions` for a class with a worker (`Orchestrator`).

    The engine is imported on call: a caller that never acts on a bag does not load it.
    """

    if TYPE_CHECKING:

        @property
        def worker(self) -> Worker: ...

        async def _row(self, ref: uuid.UUID | str) -> CheckoutRow: ...

    async def cancel_bag(
        self,
        ref: uuid.UUID | str,
        bag_id: int,
        *,
        actor: str,
        reason: str | None = None,
        reason_code: str | None = None,
    ) -> BagAction:
        """Cancel one bag of a submitted checkout at Violet, sent at most once; `actor` (who
        asks) is recorded. The returned action is `sent` until the bag shows it (docs/actions.md),
        `succeeded` when it already does, `failed` with its `error` when Violet refused it."""
        from orchestrator.engine import actions

        row = await self._row(ref)
        return await actions.cancel_bag(
            self.worker, row, bag_id, actor=actor, reason=reason, reason_code=reason_code
        )

    async def refund_bag(
        self,
        ref: uuid.UUID | str,
        bag_id: int,
        *,
        actor: str,
        amount: int | None = None,
        skus: Sequence[tuple[int, int]] | None = None,
        reason: str | None = None,
    ) -> BagAction:
        """Refund `amount` minor units, the `skus` given as (sku_id, quantity), or (neither) all
        that is left of one bag; sent at most once, like `cancel_bag`."""
        from orchestrator.engine import actions
        from orchestrator.violet.models import SkuLine

        row = await self._row(ref)
        lines = None if skus is None else [SkuLine(sku_id=s, quantity=q) for s, q in skus]
        return await actions.refund_bag(
            self.worker, row, bag_id, actor=actor, amount=amount, skus=lines, reason=reason
        )

    async def bag_actions(self, ref: uuid.UUID | str) -> list[BagAction]:
        """Every cancel and refund asked of the checkout's bags, oldest first."""
        from orchestrator.engine import actions

        return await actions.actions_of(self.worker, await self._row(ref))
