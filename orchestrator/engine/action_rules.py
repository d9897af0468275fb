"""What a bag's cancel or refund may ask, and how a read of Violet's order shows it happened.

Pure checks over what is stored (the checkout row, `checkout_bags`) and what Violet returns: a
request that cannot be right is refused here, naming its field, before anything is written or
sent. Violet answers a cancel or refund with 202 whatever becomes of it, so the only proof that
one was applied is the bag itself, read back or notified: `applied` is that test, for the
immediate read after the answer and for the read that settles an action later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from orchestrator import bag_states, states
from orchestrator.errors import IllegalTransition, InvalidRequest
from orchestrator.sensitive import find_in_text
from orchestrator.store.actions import BagNews
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


def _text_problem(value: str, limit: int) -> str | None:
    if len(value) > limit:
        return f"at most {limit} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "must not contain control characters"
    if find_in_text(value) is not None:
        return "looks like it holds a card number or a secret; it is never stored"
    return None


def _field_problems(ask: Ask) -> list[tuple[str, str]]:
    """Problems of the fields themselves, whatever the checkout."""
    bad: list[tuple[str, str]] = []
    if not ask.actor.strip():
        bad.append(("actor", "required: who asks (support reads it)"))
    elif (why := _text_problem(ask.actor, MAX_ACTOR)) is not None:
        bad.append(("actor", why))
    if ask.reason is not None and (why := _text_problem(ask.reason, MAX_REASON)) is not None:
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


def check_ask(row: CheckoutRow, ask: Ask, news: BagNews | None) -> None:
    """Refuse what cannot be right from what is stored: InvalidRequest names each bad field,
    IllegalTransition a checkout that has no order to act on. Nothing is written."""
    bad = _field_problems(ask)
    if bad:
        raise InvalidRequest(bad)
    if row.state != states.SUBMITTED or row.violet_order_id is None:
        raise IllegalTransition(
            f"checkout {row.app_order_id} is {row.state}: only a submitted checkout's bags "
            "can be canceled or refunded"
        )
    bag = stored_bag(row, ask.bag_id)
    status = news.status if news is not None else bag.get("status")
    if status is not None and bag_states.is_final(str(status)):
        raise InvalidRequest([("bag_id", f"bag {ask.bag_id} is {status}: nothing to {ask.kind}")])
    if ask.kind == REFUND and ask.amount is not None:
        total = bag.get("total")
        refunded = news.refunded_amount if news is not None else 0
        if isinstance(total, int) and ask.amount > total - refunded:
            raise InvalidRequest(
                [("amount", f"at most {total - refunded} (bag total {total}, refunded {refunded})")]
            )


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
    if kind == CANCEL:
        return bag.status == bag_states.CANCELED
    if bag.status == bag_states.REFUNDED:
        return True
    plan = before or {}
    amount = plan.get("amount")
    if not isinstance(amount, int):
        return False
    return refunded(bag) >= int(plan.get("refunded") or 0) + amount
