"""What a bag's cancel or refund may ask, and how a read of Violet's order shows it happened.

Pure checks over what is stored (the checkout row, `checkout_bags`, the bag's actions) and what
Violet returns: a request that cannot be right is refused here, naming its field, before anything
is written or sent. The stored checks count the actions already asked: an open one refuses a
second, and a succeeded one is proof of the bag's state even before any news of it is recorded.
Violet answers a cancel or refund with 202 whatever becomes of it, so the only proof that one
was applied is the bag itself, read back or notified: `applied` is that test, for the
immediate read after the answer and for the read that settles an action later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from orchestrator import bag_states, states
from orchestrator.errors import IllegalTransition, InvalidRequest
from orchestrator.sensitive import find_in_text
from orchestrator.store.action_records import proves_done
from orchestrator.store.actions import SUCCEEDED, BagAction, BagNews
from orchestrator.store.records import CheckoutRow
from orchestrator.violet.models import Bag, Cart, SkuLine

CANCEL: Final = "cancel"
REFUND: Final = "refund"
#: Violet's limits on a cancel (README §2.1 #24).
MAX_REASON: Final = 255
REASON_CODES: Final = ("OTHER", "CUSTOMER", "INVENTORY", "FRAUD", "DECLINED")
MAX_ACTOR: Final = 200
_REFUND_TYPES: Final = frozenset({"REFUND"})
_NOT_MONEY_BACK: Final = frozenset({"FAILED", "CANCELED", "ERROR", "DECLINED"})


@dataclass(frozen=True, slots=True)
class Ask:
    """A caller's cancel or refund of one bag, as given (checked by `check_ask`)."""

    kind: str
    bag_id: int
    actor: str
    reason: str | None = None
    reason_code: str | None = None
    amount: int | None = None
    skus: tuple[SkuLine, ...] | None = None

    def skus_json(self) -> list[dict[str, Any]] | None:
        if self.skus is None:
            return None
        return [{"sku_id": s.sku_id, "quantity": s.quantity} for s in self.skus]


def text_problem(value: str, limit: int) -> str | None:
    if len(value) > limit:
        return f"at most {limit} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "must not contain control characters"
    if find_in_text(value) is not None:
        return "looks like it holds a card number or a secret; it is never stored"
    return None


def actor_problem(actor: str) -> str | None:
    """What is wrong with an actor's name (None: nothing): the audit trail names who asked."""
    if not actor.strip():
        return "required: who asks (support reads it)"
    return text_problem(actor, MAX_ACTOR)


def _field_problems(ask: Ask) -> list[tuple[str, str]]:
    """Problems of the fields themselves, whatever the checkout."""
    bad: list[tuple[str, str]] = []
    if (why := actor_problem(ask.actor)) is not None:
        bad.append(("actor", why))
    if ask.reason is not None and (why := text_problem(ask.reason, MAX_REASON)) is not None:
        bad.append(("reason", why))
    if ask.reason_code is not None and ask.reason_code not in REASON_CODES:
        bad.append(("reason_code", f"one of {', '.join(REASON_CODES)}"))
    if ask.amount is not None and ask.skus is not None:
        bad.append(("amount", "give an amount or skus, not both"))
    if ask.amount is not None and ask.amount <= 0:
        bad.append(("amount", "must be > 0 (minor units)"))
    if ask.skus is not None:
        bad.extend(_sku_problems(ask.skus))
    return bad


def _sku_problems(skus: Sequence[SkuLine]) -> list[tuple[str, str]]:
    if not skus:
        return [("skus", "at least one SKU_ID:QTY")]
    ids = [s.sku_id for s in skus]
    if len(set(ids)) != len(ids):
        return [("skus", "each sku at most once")]
    if any(s.quantity <= 0 for s in skus):
        return [("skus", "quantities must be > 0")]
    return []


def stored_bag(row: CheckoutRow, bag_id: int) -> dict[str, Any]:
    """The bag as the checkout recorded it at submit; InvalidRequest naming `bag_id` if none."""
    for bag in row.bags:
        if bag.get("bag_id") == bag_id:
            return bag
    known = ", ".join(str(b.get("bag_id")) for b in row.bags) or "none"
    raise InvalidRequest([("bag_id", f"checkout {row.app_order_id} has no bag {bag_id} ({known})")])


def check_ask(
    row: CheckoutRow, ask: Ask, news: BagNews | None, actions: Sequence[BagAction]
) -> None:
    """Refuse what cannot be right from what is stored: InvalidRequest names each bad field,
    IllegalTransition a checkout that has no order to act on or a bag with an action still open.
    `actions` are the checkout's actions (any bag's). Nothing is written."""
    bad = _field_problems(ask)
    if bad:
        raise InvalidRequest(bad)
    if row.state != states.SUBMITTED or row.violet_order_id is None:
        raise IllegalTransition(
            f"checkout {row.app_order_id} is {row.state}: only a submitted checkout's bags "
            "can be canceled or refunded"
        )
    bag = stored_bag(row, ask.bag_id)
    mine = [action for action in actions if action.bag_id == ask.bag_id]
    for action in mine:
        if action.is_open:
            raise IllegalTransition(
                f"bag {ask.bag_id} already has a {action.kind} {action.state} (action "
                f"{action.id}, asked by {action.actor}); it must settle before another is asked"
            )
    total = bag.get("total")
    status, refunded = known_state(bag, news, mine)
    if _final(status):
        raise InvalidRequest([("bag_id", f"bag {ask.bag_id} is {status}: nothing to {ask.kind}")])
    left = total - refunded if isinstance(total, int) else None
    if ask.kind == REFUND and ask.amount is not None and left is not None and ask.amount > left:
        raise InvalidRequest(
            [("amount", f"at most {left} (bag total {total}, refunded {refunded})")]
        )


def known_state(
    bag: dict[str, Any], news: BagNews | None, actions: Sequence[BagAction]
) -> tuple[str | None, int]:
    """The bag's status and refunded amount as far as the orchestrator knows: its news, or the
    submit's record, overtaken by its own succeeded actions (news of those may not be recorded
    yet): a cancel leaves it CANCELED, a refund at least `before.refunded + before.amount`
    refunded, REFUNDED once that reaches the bag's total."""
    status = news.status if news is not None else bag.get("status")
    refunded = news.refunded_amount if news is not None else 0
    total = bag.get("total")
    for action in actions:
        if action.state != SUCCEEDED:
            continue
        if action.kind == CANCEL:
            status = bag_states.CANCELED
            continue
        plan = (action.answer or {}).get("before") or {}
        done, amount = plan.get("refunded"), plan.get("amount")
        if isinstance(done, int) and isinstance(amount, int):
            refunded = max(refunded, done + amount)
        if isinstance(total, int) and refunded >= total and not _final(status):
            status = bag_states.REFUNDED
    return (None if status is None else str(status)), refunded


def _final(status: Any) -> bool:
    return isinstance(status, str) and bag_states.is_final(status)


def violet_bag(order: Cart, bag_id: int) -> Bag | None:
    return next((bag for bag in order.bags if bag.id == bag_id), None)


def refunded(bag: Bag) -> int:
    """What Violet shows refunded on the bag: its refund transactions that did not fail."""
    return sum(
        t.amount or 0
        for t in bag.transactions
        if (t.type or "").upper() in _REFUND_TYPES
        and (t.status or "").upper() not in _NOT_MONEY_BACK
    )


def refund_plan(order: Cart, ask: Ask) -> dict[str, Any]:
    """Check a refund against the bag as Violet shows it now, and what a later read compares
    with: the refunded amount before, and how much this refund adds. InvalidRequest names the
    field Violet's bag refuses."""
    bag = violet_bag(order, ask.bag_id)
    if bag is None:
        raise InvalidRequest([("bag_id", f"Violet's order {order.id} has no bag {ask.bag_id}")])
    if _final(bag.status):
        raise InvalidRequest(
            [("bag_id", f"bag {ask.bag_id} is {bag.status} at Violet: nothing to refund")]
        )
    before = refunded(bag)
    left = (bag.total - before) if bag.total is not None else None
    amount = ask.amount
    if ask.skus is not None:
        amount = 0
        for line in ask.skus:
            item = next((s for s in bag.skus if s.sku_id == line.sku_id), None)
            if item is None or (item.quantity or 0) < line.quantity:
                have = ", ".join(f"{s.sku_id}x{s.quantity}" for s in bag.skus) or "none"
                raise InvalidRequest(
                    [
                        (
                            "skus",
                            f"bag {ask.bag_id} has no {line.quantity} x sku {line.sku_id} "
                            f"(it has {have})",
                        )
                    ]
                )
            amount += (item.price or 0) * line.quantity
    if left is not None and left <= 0:
        raise InvalidRequest([("bag_id", f"bag {ask.bag_id} has nothing left to refund")])
    if left is not None and amount is not None and amount > left:
        raise InvalidRequest([("amount", f"at most {left} is left to refund on bag {ask.bag_id}")])
    return {"status": bag.status, "refunded": before, "amount": amount if amount else left}


def applied(kind: str, bag: Bag | None, before: dict[str, Any] | None) -> bool:
    """Whether Violet's bag shows the action done: canceled, or refunded by the amount asked
    (all of it when the amount is not known) beyond what was refunded before it."""
    if bag is None:
        return False
    return proves_done(kind, bag.status, refunded(bag), before)
