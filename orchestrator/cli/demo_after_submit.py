"""The demo's life after submit: one bag of the two-merchant order shipped, the other refunded.

It serves the webhook receiver from this process (a thread, like the sandbox) and registers it
with the sandbox, which then signs and sends every bag move as Violet would. The merchant ships
and completes one bag through the sandbox's control surface; the demo, as a host's support desk
would, refunds the other through the library. Once the sandbox has delivered every event of the
order to the inbox, the applier applies them under the checkout's lease. What it shows is
read back from where a host reads it: the bag rows, the checkout's audit trail, the changes feed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa

from orchestrator import audit
from orchestrator.api import Orchestrator
from orchestrator.checkout import AuditEvent, Checkout
from orchestrator.cli.demo_serve import served
from orchestrator.cli.render import Output, bag_move, show_timeline
from orchestrator.sandbox import SandboxControl
from orchestrator.store import database, schema
from orchestrator.store.actions import BagAction
from orchestrator.store.changes import Change
from orchestrator.webhooks.apply import WebhookApplier, applier_pool
from orchestrator.webhooks.receive import WebhookReceiver

ACTOR: Final = "demo"
#: Bag statuses the demo expects in the end: the shipped bag's, the refunded bag's.
SHIPPED_END: Final = ("COMPLETED", "SHIPPED")
REFUNDED_END: Final = "REFUNDED"
_BAG_MOVES: Final = ("ship", "complete")
#: Events the order sends once the receiver is registered: shipped, completed, refunded.
_EXPECTED_EVENTS: Final = 3
_DELIVERY_WAIT_S: Final = 10.0
_FEED_WAIT_S: Final = 5.0
_POLL_S: Final = 0.05
#: The applier waits this long for an event whose checkout was busy (retried after a backoff).
_IDLE_HORIZON_S: Final = 1.0
_FEED_PAGE: Final = 1000
_BAG_COLUMNS: Final = (
    "bag_id",
    "merchant_id",
    "status",
    "fulfillment_status",
    "financial_status",
    "refunded_amount",
    "currency",
)


@dataclass(slots=True)
class AfterSubmit:
    """What happened to the two-merchant checkout's bags after its submit."""

    checkout: Checkout | None = None
    shipped_bag: int | None = None
    refunded_bag: int | None = None
    refund: BagAction | None = None
    refunds_at_violet: int = 0
    delivered: int = 0
    applied: int = 0
    bags: list[dict[str, Any]] = field(default_factory=list)
    events: list[AuditEvent] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    problem: str | None = None

    def bag(self, bag_id: int | None) -> dict[str, Any]:
        return next((b for b in self.bags if b["bag_id"] == bag_id), {})

    @property
    def ok(self) -> bool:
        shipped = self.bag(self.shipped_bag)
        return (
            self.problem is None
            and (shipped.get("status"), shipped.get("fulfillment_status")) == SHIPPED_END
            and self.bag(self.refunded_bag).get("status") == REFUNDED_END
            and self.refunds_at_violet == 1
        )

    def to_json(self) -> dict[str, Any]:
        c = self.checkout
        return {
            "ok": self.ok,
            "app_order_id": None if c is None else c.app_order_id,
            "violet_order_id": None if c is None else c.violet_order_id,
            "shipped_bag": self.shipped_bag,
            "refunded_bag": self.refunded_bag,
            "bags": self.bags,
            "refund": None if self.refund is None else _action_json(self.refund),
            "refunds_at_violet": self.refunds_at_violet,
            "webhooks_delivered": self.delivered,
            "webhooks_applied": self.applied,
            "events": [e.kind for e in self.events],
            "changes": [{"kind": ch.kind, "detail": ch.detail} for ch in self.changes],
            "problem": self.problem,
        }


def _action_json(action: BagAction) -> dict[str, Any]:
    return {
        "id": str(action.id),
        "bag_id": action.bag_id,
        "kind": action.kind,
        "state": action.state,
        "amount": action.amount,
        "actor": action.actor,
    }


_HIGHEST_EVENT_SQL: Final = (
    "SELECT max(event_id::numeric) FROM webhook_inbox WHERE event_id ~ '^[0-9]{1,18}$'"
)


def highest_event_id(url: str) -> int:
    """The largest numeric webhook event id the inbox holds (0: none)."""
    engine = sa.create_engine(database.normalize_url(url), poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            found = conn.execute(sa.text(_HIGHEST_EVENT_SQL)).scalar_one()
    finally:
        engine.dispose()
    return int(found or 0)


async def feed_position(orch: Orchestrator) -> str:
    """A changes cursor before every change committed from now on (a host that starts following
    the feed now): transaction ids still running or yet to come are all at or above the xmin."""
    async with orch.engine.connect() as conn:
        xmin = await conn.scalar(sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text"))
    return f"{xmin}:0"


async def play_after_submit(
    orch: Orchestrator,
    control: SandboxControl,
    checkout: Checkout | None,
    feed_from: str,
    progress: Callable[[str], None],
) -> AfterSubmit:
    """Ship one bag, refund the other, apply the webhooks; read back what a host sees."""
    result = AfterSubmit(checkout=checkout)
    if checkout is None or checkout.violet_order_id is None or len(checkout.bags) != 2:
        result.problem = "the two-merchant checkout was not submitted with two bags"
        return result
    order_id = checkout.violet_order_id
    result.shipped_bag, result.refunded_bag = (int(b["bag_id"]) for b in checkout.bags)
    seen = {e.seq for e in await audit.timeline(orch.engine, checkout.id)}
    receiver = WebhookReceiver.from_settings(orch.settings)
    with served(receiver, name="demo-webhooks", lifespan="on") as root:
        await control.register_webhook(f"{root}/")
        progress(f"   webhook receiver at {root}/ registered with the sandbox")
        for move in _BAG_MOVES:
            await control.move_bag(order_id, result.shipped_bag, move)
        progress(f"   the merchant shipped and completed bag {result.shipped_bag}")
        result.refund = await orch.refund_bag(
            checkout.id, result.refunded_bag, actor=ACTOR, reason="the shopper sent it back"
        )
        progress(
            f"   refund of bag {result.refunded_bag} asked by '{ACTOR}': {result.refund.state}"
        )
        result.delivered, result.problem = await _wait_delivered(control, order_id)
    await _apply(orch)
    result.refunds_at_violet = int(
        (await control.stats())["bag_refunds"].get(str(result.refunded_bag), 0)
    )
    result.bags = await _bag_rows(orch, checkout)
    result.events = [e for e in await audit.timeline(orch.engine, checkout.id) if e.seq not in seen]
    result.applied = sum(1 for e in result.events if e.kind == "webhook_applied")
    progress(f"   {result.delivered} webhooks delivered to the inbox, {result.applied} applied")
    result.changes = await _changes_of(orch, checkout, feed_from)
    if result.problem is None and result.applied != result.delivered:
        result.problem = f"{result.delivered} webhooks delivered, {result.applied} applied"
    if result.problem is None and result.refunds_at_violet != 1:
        result.problem = f"Violet saw {result.refunds_at_violet} refunds, expected exactly 1"
    return result


async def _apply(orch: Orchestrator) -> None:
    """Apply the inbox's pending events, each under its checkout's lease.

    The applier rather than a whole recovery pass: the database may be the user's scratch one,
    and a recovery pass would also drive other checkouts due there, against the demo's sandbox.
    """
    async with applier_pool(orch.settings.database_url) as pool:
        await WebhookApplier(pool).run_until_idle(horizon=_IDLE_HORIZON_S)


async def _wait_delivered(control: SandboxControl, order_id: int) -> tuple[int, str | None]:
    """How many of the order's events the receiver acknowledged (stored in the inbox), waiting
    (bounded) until all of them are; the problem when some never were."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _DELIVERY_WAIT_S
    while True:
        sent = await control.webhook_events(order_id=order_id)
        delivered = sum(1 for e in sent if e["status"] == "SUCCEEDED")
        if delivered == len(sent) >= _EXPECTED_EVENTS:
            return delivered, None
        if loop.time() > deadline:
            return delivered, f"the sandbox delivered {delivered} of {len(sent)} webhook events"
        await asyncio.sleep(_POLL_S)


async def _bag_rows(orch: Orchestrator, checkout: Checkout) -> list[dict[str, Any]]:
    table = schema.checkout_bags
    query = (
        sa.select(*(table.c[name] for name in _BAG_COLUMNS))
        .where(table.c.checkout_id == checkout.id)
        .order_by(table.c.bag_id)
    )
    async with orch.engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings()]


async def _changes_of(orch: Orchestrator, checkout: Checkout, after: str) -> list[Change]:
    """The checkout's changes in the feed after `after`. A change shows once no transaction
    that began before it is still running (anywhere on the server): wait for the last one,
    the refunded bag's status, bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _FEED_WAIT_S
    found: list[Change] = []
    cursor = after
    while True:
        page = await orch.changes(cursor, _FEED_PAGE)
        found += [ch for ch in page if ch.checkout_id == checkout.id]
        cursor = page[-1].cursor if page else cursor
        if len(page) < _FEED_PAGE and (_refund_seen(found) or loop.time() > deadline):
            return found
        if len(page) < _FEED_PAGE:
            await asyncio.sleep(_POLL_S)


def _refund_seen(found: list[Change]) -> bool:
    return any(
        ch.kind == "bag_status" and (ch.detail or {}).get("to") == REFUNDED_END for ch in found
    )


def show_after_submit(out: Output, result: AfterSubmit) -> None:
    """The after-submit timeline, each bag as recorded, the checkout's changes feed."""
    c = result.checkout
    if c is None:
        return
    out.line()
    title = f"after submit: {c.app_order_id}, bag {result.shipped_bag} shipped, "
    show_timeline(out, result.events, title=title + f"bag {result.refunded_bag} refunded")
    for bag in result.bags:
        out.line(
            f"bag {bag['bag_id']} (merchant {bag['merchant_id']}): {bag['status']}, "
            f"fulfillment {bag['fulfillment_status'] or '-'}, "
            f"financial {bag['financial_status'] or '-'}, refunded {bag['refunded_amount']}"
        )
    out.line(f"changes feed for {c.app_order_id}:")
    for change in result.changes:
        out.line(f"  {change.cursor:<16} {change.kind:<18} {_change_text(change)}")


def _change_text(change: Change) -> str:
    detail = change.detail or {}
    if change.kind == "bag_status":
        return bag_move(detail.get("bag_id"), detail.get("from"), detail.get("to"))
    if change.kind == "action_settled":
        return (
            f"{detail.get('kind')} of bag {detail.get('bag_id')} by {detail.get('actor')}: "
            f"{detail.get('state')}"
        )
    return f"state {detail.get('state')}" if "state" in detail else ""


def verdict(result: AfterSubmit) -> str:
    """One line for the demo's summary."""
    shipped = result.bag(result.shipped_bag)
    refunded = result.bag(result.refunded_bag)
    return (
        f"{'after submit: one bag shipped, one refunded':<45} bag {result.shipped_bag} "
        f"{shipped.get('status', '-')}/{shipped.get('fulfillment_status', '-')}, bag "
        f"{result.refunded_bag} {refunded.get('status', '-')}, refunds at Violet: "
        f"{result.refunds_at_violet}"
    )
