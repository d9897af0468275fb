"""A bag's cancel or refund after submit, sent at most once (design §3 and §10).

Violet's cancel and refund are not idempotent (no key; a second request is a second refund) and
answer 202 whether they worked or not, so they follow the step protocol of the submit:

1. check the request against what is stored (the bag's news and every action already asked of
   it) and, for a refund, Violet's bag: bad input is refused naming its field, nothing written;
2. take the checkout's lease (the one the checkout path and the webhook applier take), so
   nothing else writes the checkout meanwhile; a held lease is `CheckoutBusy`; then check
   again under it, a refund against Violet's bag read again: of two callers, the second
   finds the first one's action (open, or settled with what it did to the bag);
3. write the intent: the action `requested`, its `send_by` bound on the database's clock, and
   the audit event naming the actor, in one transaction (one open action per bag);
4. send it under the send gate: it leaves only before `send_by` and while the lease is ours;
5. record what came back, releasing the lease in the same transaction: a refusal is `failed`;
   a 202 or no answer is `sent` (the outcome is unknown until the bag shows it), or
   `succeeded` at once when a read of the order right after the answer shows the bag moved;
   that read is then recorded as the bag's news, as a read-back would be.

Nothing here ever sends an action a second time. An action left open (its process died, or
Violet's 202 hid a failure) is settled by reading the order (`reconcile_actions`, run by the
recovery job): the bag moved -> `succeeded`; once the settle window has passed with no move ->
`failed` ("Violet did not apply it"); the caller may then ask again, knowingly.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Final

from orchestrator.clock import local_clock
from orchestrator.engine import action_rules as rules
from orchestrator.engine.action_rules import CANCEL, REFUND, Ask
from orchestrator.engine.budgets import MerchantPacer, bag_merchants
from orchestrator.engine.events import call_events
from orchestrator.engine.steps import error_summary
from orchestrator.engine.worker import Worker
from orchestrator.errors import CheckoutBusy, DatabaseUnavailable
from orchestrator.store import actions as store
from orchestrator.store import database
from orchestrator.store.actions import FAILED, SENT, SUCCEEDED, BagAction, Lease, Move
from orchestrator.store.records import CheckoutRow, Event
from orchestrator.violet import VioletError, capture_calls, paced_by, send_gate
from orchestrator.violet.gate import SendGate
from orchestrator.violet.models import (
    CancellationStatus,
    Cart,
    OrderCancellation,
    Refund,
    RefundStatus,
    SkuLine,
)

__all__ = [
    "CRASH_AFTER_INTENT",
    "CRASH_AFTER_SEND",
    "actions_of",
    "cancel_bag",
    "reconcile_actions",
    "refund_bag",
]

log = logging.getLogger(__name__)

#: Crash points (engine/crashpoints.py): after the intent committed, and after the request left.
CRASH_AFTER_INTENT: Final = "action_after_intent"
CRASH_AFTER_SEND: Final = "action_after_send"
#: Why an action nothing shows applied ends failed once its settle window has passed.
NOT_APPLIED: Final = "Violet did not apply it"


async def cancel_bag(
    worker: Worker,
    row: CheckoutRow,
    bag_id: int,
    *,
    actor: str,
    reason: str | None = None,
    reason_code: str | None = None,
) -> BagAction:
    """Cancel one bag of a submitted checkout (see the module docstring for what is promised)."""
    ask = Ask(CANCEL, bag_id, actor, reason=reason, reason_code=reason_code)
    return await _act(worker, row, ask)


async def refund_bag(
    worker: Worker,
    row: CheckoutRow,
    bag_id: int,
    *,
    actor: str,
    amount: int | None = None,
    skus: Sequence[SkuLine] | None = None,
    reason: str | None = None,
) -> BagAction:
    """Refund `amount` (minor units), the given `skus`, or (neither) all that is left of a bag."""
    lines = tuple(skus) if skus is not None else None
    ask = Ask(REFUND, bag_id, actor, reason=reason, amount=amount, skus=lines)
    return await _act(worker, row, ask)


async def actions_of(worker: Worker, row: CheckoutRow) -> list[BagAction]:
    """Every cancel and refund asked of the checkout's bags, oldest first."""
    return await store.actions_of(worker.repo.engine, row.id)


async def _act(worker: Worker, row: CheckoutRow, ask: Ask) -> BagAction:
    await _check(worker, row, ask)
    if ask.kind == REFUND:
        await _plan(worker, row, ask)  # a refund Violet's bag refuses takes no lease
    engine = worker.repo.engine
    lease = await store.claim(engine, row.id, worker=worker.id, lease_seconds=worker.lease_seconds)
    with worker.leases.holding(row.id):
        try:
            # Again under the lease: the checks above took none, and another caller may have
            # asked or settled an action of the bag since. The refund's plan (what a later
            # read compares with) is made from Violet's bag as it is now.
            await _check(worker, row, ask)
            before = await _plan(worker, row, ask) if ask.kind == REFUND else None
            action, read = await _under_lease(worker, row, lease, ask, before)
        except BaseException as exc:
            await _give_back(worker, lease)
            if isinstance(exc, Exception) and database.is_database_error(exc):
                raise DatabaseUnavailable(
                    f"database unavailable ({database.error_reason(exc)}); the {ask.kind} of "
                    f"bag {ask.bag_id}, if its intent was written, is never sent again: "
                    "recovery settles it by reading the order (`orchestrator bag-actions`)"
                ) from exc
            raise
    await _record_read(worker, row.id, read)
    return action


async def _check(worker: Worker, row: CheckoutRow, ask: Ask) -> None:
    """The stored checks (action_rules.check_ask): the bag's news and every action asked."""
    engine = worker.repo.engine
    news = await store.bag_news(engine, row.id, ask.bag_id)
    rules.check_ask(row, ask, news, await store.actions_of(engine, row.id))


async def _plan(worker: Worker, row: CheckoutRow, ask: Ask) -> dict[str, object]:
    """The refund checked against Violet's bag as it is now (action_rules.refund_plan)."""
    assert row.violet_order_id is not None  # check_ask: a submitted checkout has one
    return rules.refund_plan(await worker.client.get_order(row.violet_order_id), ask)


async def _record_read(worker: Worker, checkout_id: uuid.UUID, order: Cart | None) -> None:
    """Record an order read that showed an action done as news of its bags, the way a
    read-back does (store/bags.py `record`): `checkout_bags` and the host's feed then
    show what the action did. The action is recorded already; a busy checkout or a database
    error leaves this to the next news (the checks count succeeded actions meanwhile)."""
    if order is None:
        return
    try:
        await store.record_order_read(
            worker.repo.engine,
            checkout_id,
            order.model_dump(mode="json"),
            worker=worker.id,
            via="bag_action",
        )
    except Exception as exc:
        if not database.is_database_error(exc):
            raise
        log.info("order read of %s not recorded (%s)", checkout_id, database.error_reason(exc))


async def _give_back(worker: Worker, lease: Lease) -> None:
    """Release the lease after a failure; a database that is down keeps it until it expires."""
    try:
        await store.release(worker.repo.engine, lease)
    except Exception as exc:
        if not database.is_database_error(exc):
            raise
        log.info("lease of %s not released (%s)", lease.checkout_id, database.error_reason(exc))


def _requested_event(action_id: uuid.UUID, ask: Ask) -> Event:
    return Event(
        "bag_action_requested",
        detail={
            "action_id": str(action_id),
            "kind": ask.kind,
            "bag_id": ask.bag_id,
            "amount": ask.amount,
            "skus": ask.skus_json(),
            "reason": ask.reason,
            "actor": ask.actor,
        },
    )


def _takeover(lease: Lease) -> list[Event]:
    if lease.taken_over_from is None:
        return []
    return [Event("lease_taken_over", detail={"previous_owner": lease.taken_over_from})]


async def _under_lease(
    worker: Worker,
    row: CheckoutRow,
    lease: Lease,
    ask: Ask,
    before: dict[str, object] | None,
) -> tuple[BagAction, Cart | None]:
    """Intent, send, answer; returns the action and the order read that showed it done."""
    engine, runner = worker.repo.engine, worker.runner
    intent = store.Intent(
        id=uuid.uuid4(),
        bag_id=ask.bag_id,
        kind=ask.kind,
        actor=ask.actor,
        amount=ask.amount,
        skus=ask.skus_json(),
        reason=ask.reason,
        before=dict(before) if before is not None else None,
    )
    # Before the intent write: the local deadline is then no later than the stored `send_by`.
    gate = SendGate(
        deadline=local_clock() + runner.send_window,
        lease_until=lambda: _lease_until(worker, lease),
    )
    events = [*_takeover(lease), _requested_event(intent.id, ask)]
    action = await store.write_intent(
        engine, lease, intent, send_seconds=runner.send_window, events=events
    )
    runner.crash.hit(CRASH_AFTER_INTENT)
    assert row.violet_order_id is not None
    with capture_calls() as calls:
        with send_gate(gate), paced_by(_pacer(worker, row, ask.bag_id)):
            move = await _send(worker, row.violet_order_id, ask)
        runner.crash.hit(CRASH_AFTER_SEND)
        moves = [move]
        read = await _read_order(worker, row.violet_order_id) if move.state == SENT else None
        shown = _shows_applied(read, action)
        if shown is not None:
            moves.append(Move(SUCCEEDED, answer=shown))
    events = [*call_events(calls), *_move_events(action, moves, how="answer")]
    recorded = await store.record(engine, lease, action, moves, events, release=True)
    return recorded, (read if shown is not None else None)


def _pacer(worker: Worker, row: CheckoutRow, bag_id: int) -> MerchantPacer | None:
    """The bag's merchant's rate budget for its action: a turn taken before the request leaves
    (past the budget wait, the action fails unsent, `budget_closed`), a 429 told to it."""
    runner = worker.runner
    if runner.budgets is None:
        return None
    return MerchantPacer(
        runner.budgets,
        lambda: bag_merchants(row, bag_id),
        max_wait=runner.budget_wait,
        max_retry_after=runner.retry.max_retry_after,
    )


def _lease_until(worker: Worker, lease: Lease) -> float:
    """Until when the lease is surely ours on the local clock, renewals included."""
    renewed = worker.leases.renewed_until(lease.checkout_id)
    return lease.local_until if renewed is None else max(lease.local_until, renewed)


async def _send(worker: Worker, order_id: int, ask: Ask) -> Move:
    """Make the one request and say what it amounts to (never raises a Violet error)."""
    client = worker.client
    try:
        if ask.kind == CANCEL:
            cancellation = await client.cancel_bag(
                order_id, ask.bag_id, reason=ask.reason, reason_code=ask.reason_code
            )
            return _cancel_move(cancellation)
        refund = await client.refund_bag(
            order_id, ask.bag_id, amount=ask.amount, skus=ask.skus, reason=ask.reason
        )
        return _refund_move(refund)
    except VioletError as exc:
        error = error_summary(exc, ask.kind)
        if exc.classification == "outcome_unknown":
            return Move(SENT, sent=True, error=error)  # it may have left: never sent again
        # Refused, or known not applied (never sent, 429, 502/503): nothing more is sent.
        return Move(FAILED, sent=exc.status is not None, error=error)


def _cancel_move(answer: OrderCancellation) -> Move:
    said = {"violet": {"status": answer.status, "message": answer.message}}
    if answer.status == CancellationStatus.CANCELLATION_FAILURE:
        error = {"class": "refused", "type": answer.status, "message": answer.message}
        return Move(FAILED, sent=True, answer=said, error=error)
    return Move(SENT, sent=True, answer=said)


def _refund_move(answer: Refund) -> Move:
    said = {
        "violet": {
            "refund_id": answer.id,
            "status": answer.status,
            "amount": answer.amount,
            "message": answer.message,
        }
    }
    if answer.status in (RefundStatus.FAILED, RefundStatus.CANCELED):
        error = {
            "class": "refused",
            "type": f"refund_{answer.status}".lower(),
            "message": answer.message,
        }
        return Move(FAILED, sent=True, answer=said, error=error)
    return Move(SENT, sent=True, answer=said)


async def _read_order(worker: Worker, order_id: int) -> Cart | None:
    """Violet's order read now (a failed read shows nothing: None)."""
    try:
        return await worker.client.get_order(order_id)
    except VioletError:
        return None


def _shows_applied(order: Cart | None, action: BagAction) -> dict[str, object] | None:
    """The evidence that Violet's order shows the action done, or None."""
    if order is None:
        return None
    bag = rules.violet_bag(order, action.bag_id)
    if not rules.applied(action.kind, bag, (action.answer or {}).get("before")):
        return None
    assert bag is not None  # applied: the bag is there
    return {"read_back": {"bag_status": bag.status, "refunded": rules.refunded(bag)}}


def _move_events(action: BagAction, moves: Sequence[Move], *, how: str) -> list[Event]:
    """`bag_action_sent` and/or `bag_action_settled`, each naming the action and its actor."""
    events = []
    for move in moves:
        detail = {
            "action_id": str(action.id),
            "kind": action.kind,
            "bag_id": action.bag_id,
            "actor": action.actor,
            "state": move.state,
            "how": how,
        }
        if move.error is not None:
            detail["error"] = move.error
        kind = "bag_action_sent" if move.state == SENT else "bag_action_settled"
        events.append(Event(kind, detail=detail))
    return events


# -- settling what was left open ----------------------------------------------------------------


async def reconcile_actions(worker: Worker, budget: int) -> int:
    """Settle open actions nobody is working on, by reading their order (at most `budget`
    reads); returns how many it settled. Never sends anything.

    A `sent` action past the settle window (`worker.action_settle_seconds` from `sent_at`), and
    a `requested` one past it from its `send_by` (its process stopped before recording an
    answer; the request, if it left, left by then): the bag moved -> `succeeded`; otherwise
    `failed`, "Violet did not apply it" (a 202 that hid a failure, or a request that never
    left). A checkout whose lease is held is skipped (the next run sees it again).
    """
    if budget <= 0:
        return 0
    engine = worker.repo.engine
    found = await store.unsettled(engine, settle_seconds=worker.action_settle_seconds, limit=budget)
    settled = 0
    for item in found:
        if item.violet_order_id is None:
            continue
        try:
            lease = await store.claim(
                engine,
                item.action.checkout_id,
                worker=worker.id,
                lease_seconds=worker.lease_seconds,
            )
        except CheckoutBusy:
            continue
        with worker.leases.holding(lease.checkout_id):
            try:
                done, shown = await _settle(worker, lease, item)
            except BaseException:
                await _give_back(worker, lease)
                raise
        settled += done
        await _record_read(worker, lease.checkout_id, shown)
    return settled


async def _settle(worker: Worker, lease: Lease, item: store.Unsettled) -> tuple[int, Cart | None]:
    """Read the order and settle the action by what its bag shows: (1 when it settled, the
    order read when it showed the action done)."""
    action = item.action
    assert item.violet_order_id is not None
    with capture_calls() as calls:
        try:
            order = await worker.client.get_order(item.violet_order_id)
        except VioletError as exc:
            log.info("bag action %s: order read failed (%s)", action.id, exc)
            order = None
    events = [*_takeover(lease), *call_events(calls)]
    if order is None:
        await store.release(worker.repo.engine, lease, events)
        return 0, None
    bag = rules.violet_bag(order, action.bag_id)
    moves: list[Move] = [] if action.state == SENT else [Move(SENT)]
    shown = _shows_applied(order, action)
    if shown is not None:
        moves.append(Move(SUCCEEDED, answer=shown))
    else:
        error = {
            "class": "not_applied",
            "type": "not_applied",
            "message": f"{NOT_APPLIED}: bag {action.bag_id} is still "
            f"{bag.status if bag is not None else 'missing'} after the settle window",
        }
        moves = [Move(FAILED, error=error)]
    events += _move_events(action, moves, how="read_back")
    await store.record(worker.repo.engine, lease, action, moves, events, release=True)
    return 1, (order if shown is not None else None)
