"""A checkout's calls paced by the rate budgets of the merchants it involves.

Around a drive, the runner sets a `MerchantPacer` (violet/pacing.py): before each call that
reaches the merchants' platforms it takes the call's turn on every merchant of the checkout (a
multi-merchant cart waits for the busiest), sleeping a short wait or, past `max_wait`, leaving
the call unsent (`VioletBudgetClosed`) so the drive defers the checkout durably; each 429 closes
and paces down those merchants' budgets for every process (store/budgets.py). A checkout whose
merchants are not known yet (a cart not created, SKUs given without their merchant) is paced by
nothing but the global throttle. A bag's cancel or refund is paced by its bag's merchant: past
`max_wait` it fails unsent (engine/actions.py), for the caller to ask again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.store.budgets import MerchantBudgets, merchant_key
from orchestrator.store.records import CheckoutRow
from orchestrator.violet.errors import VioletBudgetClosed
from orchestrator.violet.ops import Op

__all__ = ["MerchantPacer", "bag_merchants", "checkout_merchants"]

#: The wait assumed for a 429 without a Retry-After.
_DEFAULT_RETRY_AFTER = 1.0


def checkout_merchants(row: CheckoutRow) -> list[int]:
    """The merchants a checkout's calls reach: its bags' (once Violet made the cart), else the
    ones its request names for its SKUs (`merchant_id`), each once, in order."""
    found = [_id(bag.get("merchant_id")) for bag in row.bags]
    if not any(found):
        found = [_id(sku.get("merchant_id")) for sku in row.request.get("skus") or []]
    return list(dict.fromkeys(m for m in found if m is not None))


def bag_merchants(row: CheckoutRow, bag_id: int) -> list[int]:
    """The merchant a bag's cancel or refund reaches: the bag's, as stored at submit."""
    found = [_id(bag.get("merchant_id")) for bag in row.bags if bag.get("bag_id") == bag_id]
    return [m for m in found if m is not None][:1]


def _id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class MerchantPacer:
    """The pacer of one drive or one bag action: asks `merchants` at each call which merchants
    it reaches (a drive's row gains them when create_cart answers)."""

    def __init__(
        self,
        budgets: MerchantBudgets,
        merchants: Callable[[], Sequence[int]],
        *,
        max_wait: float,
        max_retry_after: float,
    ) -> None:
        self.budgets = budgets
        self.merchants = merchants
        self.max_wait = max_wait
        self.max_retry_after = max_retry_after
        #: A 429 of this drive was charged to merchant budgets (not the global throttle's).
        self.charged_429 = False
        #: A turn taken ahead (`reserve`), spent by the next call that reaches a platform.
        self.reserved = False

    def keys(self) -> list[str]:
        return [merchant_key(m) for m in self.merchants()]

    async def reserve(self, step: str) -> None:
        """Take the turn of `step`'s first platform call before the step's intent is written:
        a budget with no turn within the wait then defers the checkout with one write (its
        release), not an intent write and its release, and no `step_started` in the trail.
        Raises `VioletBudgetClosed` as `admit` does."""
        self.reserved = await self._take(None, step)

    def forget_reserved(self) -> None:
        """A step that ended without spending its turn (it failed before its platform call)
        leaves it to no other step."""
        self.reserved = False

    async def admit(self, op: Op) -> None:
        if self.reserved:
            self.reserved = False
            return
        await self._take(op.method, op.name)

    async def _take(self, method: str | None, name: str) -> bool:
        """Take a turn on the budgets of the checkout's merchants (False: it has none known)."""
        keys = self.keys()
        if not keys:
            return False
        wait = await self.budgets.take(keys, max_wait=self.max_wait)
        if wait > self.max_wait:
            raise VioletBudgetClosed(
                f"not sent: the rate budget of {', '.join(keys)} has no turn for {wait:.2f} s",
                wait=wait,
                method=method,
                op=name,
                error_type="budget_closed",
            )
        if wait > 0:
            await asyncio.sleep(wait)
        return True

    async def rate_limited(self, op: Op, retry_after: float | None) -> None:
        keys = self.keys()
        if not keys:
            return
        wait = _DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        await self.budgets.rate_limited(keys, min(wait, self.max_retry_after), hold_s=self.max_wait)
        self.charged_429 = True
