"""`verify`: compare what we recorded with what Violet says, so "exactly once" is a measured number.

For each checkout that has a Violet cart it reads the cart (read-only at Violet) and reports every
disagreement: state vs Violet's status, per-bag status, totals. With `check_duplicates` it also
searches Violet by `app_order_id` and counts orders that have more than one live cart.

What it reads of an order Violet took (a submitted checkout, or a failed one whose bags Violet
settled) is recorded like a read-back (`store.bags.record_read`): each bag's status, forward only,
and Violet's order status, under the checkout's lease. The report compares with what was recorded
before the read: drift is what the record held, not what it holds after.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from orchestrator import states
from orchestrator.engine.worker import Worker
from orchestrator.store import bags, database
from orchestrator.store.records import TOTAL_FIELDS, CheckoutRow
from orchestrator.violet import Cart, OrderStatus, VioletError, VioletNotFound
from orchestrator.violet.models import OPEN_BAG_STATUSES, REFUSED_BAG_STATUSES

DELETED = "DELETED"
"""How a cart Violet answers 404 for (released by us) appears in the report."""

log = logging.getLogger(__name__)


def _bag_phase(status: str | None) -> str:
    """What a bag's status means for our record (the sets in violet/statuses.py). Progress within
    a phase is not drift: an ACCEPTED bag later COMPLETED is the same outcome, and so is a bag
    recorded while SUBMITTED (not settled yet) that Violet then accepts; one it then rejects is
    drift."""
    if status in OPEN_BAG_STATUSES:
        return "open"
    if status in REFUSED_BAG_STATUSES:
        return "rejected"
    return "accepted"  # accepted, or taken and not settled yet (SUBMITTED or a status unknown)


@dataclass(frozen=True, slots=True)
class Drift:
    """One disagreement between our record and Violet's."""

    checkout_id: str
    app_order_id: str
    field: str
    local: Any
    violet: Any

    def to_json(self) -> dict[str, Any]:
        return {
            "checkout_id": self.checkout_id,
            "app_order_id": self.app_order_id,
            "field": self.field,
            "local": self.local,
            "violet": self.violet,
        }


@dataclass(slots=True)
class VerifyReport:
    """The result of one verification pass."""

    checked: int = 0
    disagreements: list[Drift] = field(default_factory=list)
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    duplicates_checked: bool = False
    duplicate_carts: dict[str, list[int]] = field(default_factory=dict)
    duplicate_orders: dict[str, list[int]] = field(default_factory=dict)
    #: Checkouts whose record the read changed (bag rows, Violet's order status).
    recorded: int = 0
    #: Checkouts whose read could not be recorded now (busy): the next read-back records it.
    unrecorded: int = 0
    duration_s: float = 0.0

    @property
    def drift(self) -> int:
        """Checkouts whose record disagrees with Violet (plus app_order_ids with two orders)."""
        return len({d.checkout_id for d in self.disagreements}) + len(self.duplicate_orders)

    @property
    def ok(self) -> bool:
        return self.drift == 0 and not self.unreadable

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "checked": self.checked,
            "drift": self.drift,
            "disagreements": [d.to_json() for d in self.disagreements],
            "unreadable": self.unreadable,
            "recorded": self.recorded,
            "unrecorded": self.unrecorded,
            "duration_s": round(self.duration_s, 3),
        }
        if self.duplicates_checked:
            data["duplicate_carts"] = self.duplicate_carts
            data["duplicate_orders"] = self.duplicate_orders
        return data


def _status_agrees(state: str, status: str, cart: Cart | None) -> bool:
    """Does Violet's order status (or DELETED) fit our state? See docs/operations.md."""
    submitted = cart is not None and cart.is_submitted
    if state == states.SUBMITTED:
        return submitted and status not in (OrderStatus.REQUIRES_ACTION, DELETED)
    if state == states.REQUIRES_ACTION:
        return status == OrderStatus.REQUIRES_ACTION
    if state == states.CANCELED:
        return status in (DELETED, OrderStatus.CANCELED)
    if state == states.FAILED:
        # Failed means Violet never took the order, or refused every bag of it.
        return not submitted or (cart is not None and bool(cart.bags) and not cart.accepted_bags)
    return status == OrderStatus.IN_PROGRESS and not submitted


def compare(row: CheckoutRow, cart: Cart | None) -> list[Drift]:
    """Every disagreement between one checkout and its Violet cart (None: Violet said 404)."""
    status = DELETED if cart is None else (cart.status or OrderStatus.IN_PROGRESS)
    found: list[Drift] = []

    def drift(name: str, local: Any, violet: Any) -> None:
        found.append(Drift(str(row.id), row.app_order_id, name, local, violet))

    if not _status_agrees(row.state, status, cart):
        drift("state", row.state, status)
    if cart is None or row.state != states.SUBMITTED:
        return found
    violet_bags = {bag.id: bag for bag in cart.bags}
    for bag in row.bags:
        theirs = violet_bags.pop(bag.get("bag_id"), None)  # type: ignore[arg-type]
        if theirs is None:
            drift(f"bags[{bag.get('bag_id')}]", "present", "missing")
            continue
        if _bag_phase(bag.get("status")) != _bag_phase(theirs.status):
            drift(f"bags[{theirs.id}].status", bag.get("status"), theirs.status)
    for extra in violet_bags.values():
        drift(f"bags[{extra.id}]", "missing", extra.status)
    for name in TOTAL_FIELDS:
        local, violet = getattr(row, name), getattr(cart, name)
        if local is not None and violet is not None and local != violet:
            drift(name, local, violet)
    return found


def _worth_recording(row: CheckoutRow, cart: Cart | None) -> bool:
    """An order Violet took: a submitted checkout's, or a failed one's whose bags Violet moved."""
    if cart is None or row.state not in (states.SUBMITTED, states.FAILED):
        return False
    return row.state == states.SUBMITTED or cart.is_submitted


async def _record(
    pool: AsyncConnectionPool, worker: Worker, row: CheckoutRow, cart: Cart, report: VerifyReport
) -> None:
    try:
        done = await bags.record_read(
            pool, worker.id, row.id, cart.model_dump(mode="json"), via="verify"
        )
    except Exception as exc:
        if not database.is_database_error(exc):
            raise
        log.warning("checkout %s: read not recorded (%s)", row.id, database.error_reason(exc))
        report.unrecorded += 1
        return
    if done.busy is not None:
        report.unrecorded += 1
    elif done.moved or done.violet_status is not None:
        report.recorded += 1


async def verify(
    worker: Worker,
    *,
    since: datetime | None = None,
    sample: int | None = None,
    check_duplicates: bool = False,
    concurrency: int = 8,
) -> VerifyReport:
    """Read every (or a sample of the) checkout's cart from Violet and report drift.

    `worker` is an open `Orchestrator`'s: its repository lists the checkouts, its client reads
    Violet. What it reads of orders Violet took is recorded (module docstring).
    """
    async with bags.pool(worker.repo.engine.url) as pool:
        return await _verify(worker, pool, since, sample, check_duplicates, concurrency)


async def _verify(
    worker: Worker,
    pool: AsyncConnectionPool,
    since: datetime | None,
    sample: int | None,
    check_duplicates: bool,
    concurrency: int,
) -> VerifyReport:
    started = time.monotonic()
    report = VerifyReport(duplicates_checked=check_duplicates)
    rows = await worker.repo.with_violet_order(since=since, sample=sample)
    slots = asyncio.Semaphore(concurrency)

    async def check(row: CheckoutRow) -> None:
        assert row.violet_order_id is not None
        async with slots:
            try:
                try:
                    cart: Cart | None = await worker.client.get_cart(row.violet_order_id)
                except VioletNotFound:
                    cart = None
                report.disagreements.extend(compare(row, cart))
                if _worth_recording(row, cart):
                    assert cart is not None
                    await _record(pool, worker, row, cart, report)
                if check_duplicates:
                    found = await worker.client.search_orders(
                        app_order_id=row.app_order_id, exclude_in_progress=False
                    )
                    carts = sorted(c.id for c in found)
                    orders = sorted(c.id for c in found if c.is_submitted)
                    if len(carts) > 1:
                        report.duplicate_carts[row.app_order_id] = carts
                    if len(orders) > 1:
                        report.duplicate_orders[row.app_order_id] = orders
            except VioletError as exc:
                report.unreadable.append(
                    {
                        "checkout_id": str(row.id),
                        "app_order_id": row.app_order_id,
                        "error": f"{exc.classification}: {type(exc).__name__}",
                    }
                )
            report.checked += 1

    await asyncio.gather(*(check(row) for row in rows))
    report.disagreements.sort(key=lambda d: (d.app_order_id, d.field))
    report.duration_s = time.monotonic() - started
    return report


__all__ = ["Drift", "VerifyReport", "compare", "verify"]
