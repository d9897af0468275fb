"""The records of bag actions (a bag's cancel or refund after submit) and their states.

Plain dataclasses read from `bag_actions` and `checkout_bags`; the statements that write and
read them are store/actions.py and store/action_reads.py. `proves_done` is the one test of
whether what Violet shows of a bag proves an action done, whoever reads it (the read after the
answer, recovery's read, a webhook's or a read-back's news).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from orchestrator import bag_states

REQUESTED: Final = "requested"
SENT: Final = "sent"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
OPEN_STATES: Final = frozenset({REQUESTED, SENT})

ACTION_COLUMNS: Final = (
    "id, checkout_id, bag_id, kind, state, amount, skus, reason, actor, requested_at, sent_at,"
    " send_by, settled_at, answer, error"
)


@dataclass(frozen=True, slots=True)
class BagAction:
    """A cancel or refund of one bag, as a caller sees it.

    `state`: `requested` (written, not known to have left), `sent` (it left; Violet answered
    202 or did not answer, and says whether it worked only later), `succeeded` (the bag was
    seen canceled or refunded), `failed` (`error` says why; nothing more will be sent).
    """

    id: uuid.UUID
    checkout_id: uuid.UUID
    bag_id: int
    kind: str
    state: str
    amount: int | None
    skus: list[dict[str, Any]] | None
    reason: str | None
    actor: str
    requested_at: datetime
    sent_at: datetime | None
    send_by: datetime | None
    settled_at: datetime | None
    answer: dict[str, Any] | None
    error: dict[str, Any] | None

    @classmethod
    def from_mapping(cls, row: Any) -> BagAction:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "checkout_id": str(self.checkout_id),
            "bag_id": self.bag_id,
            "kind": self.kind,
            "state": self.state,
            "amount": self.amount,
            "skus": self.skus,
            "reason": self.reason,
            "actor": self.actor,
            "requested_at": iso(self.requested_at),
            "sent_at": iso(self.sent_at),
            "send_by": iso(self.send_by),
            "settled_at": iso(self.settled_at),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Lease:
    """A checkout's lease as this worker holds it: the fencing token and its local expiry."""

    checkout_id: uuid.UUID
    app_order_id: str
    worker: str
    epoch: int
    #: Until then the lease is surely ours, on `orchestrator.clock.local_clock`.
    local_until: float
    #: The previous owner whose expired lease was taken over (None: it was free).
    taken_over_from: str | None


@dataclass(frozen=True, slots=True)
class BagNews:
    """What `checkout_bags` holds of a bag (webhooks and read-backs keep it)."""

    status: str
    refunded_amount: int


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a Z, like every JSON document the orchestrator prints."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Unsettled:
    """An open action left without its outcome, with what a read of Violet needs."""

    action: BagAction
    violet_order_id: int | None
    app_order_id: str


def proves_done(kind: str, status: str | None, refunded: int, before: Any) -> bool:
    """Whether a bag showing `status` with `refunded` (minor units) refunded proves a `kind`
    action done: a cancel by the bag CANCELED; a refund by the bag REFUNDED, or refunded by at
    least the amount it asked beyond what was refunded before it (`before`, the plan written
    with its intent). An earlier refund's news never settles a later one."""
    if kind == "cancel":
        return status == bag_states.CANCELED
    if status == bag_states.REFUNDED:
        return True
    plan = before if isinstance(before, dict) else {}
    amount, done = plan.get("amount"), plan.get("refunded")
    if not isinstance(amount, int) or not isinstance(done, int):
        return False
    return refunded >= done + amount
