"""A bag's life after submit, declared once: Violet's bag statuses, their legal moves, their order.

A submitted checkout is terminal for the checkout machine; each of its bags lives on, driven by
the merchant's platform and reported by webhooks and read-backs (Violet's bag `status` enum,
shared/violet/README.md §3.5). Whatever applies that news asks this module whether a move is
legal and whether a piece of news is newer than what is held. The migration that creates
`checkout_bags` holds a frozen copy of the moves (the `checkout_bag_transitions` table and its
trigger); a test compares the two. Plain data and pure functions, importing nothing from the
project, so `store/` may import it as well as the webhook applier.

Delivery is best-effort and unordered, so a bag may be first seen in any status (an insert takes
any status) and news may skip statuses (a lost ACCEPTED before COMPLETED): every move goes
forward in `RANK`, and the moves allow skipping ahead. Nothing leaves a final status.
Fulfilment (shipped, delivered) is a separate Violet field (`fulfillment_status`), not a bag
status, and has no graph.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

# -- statuses (Violet's spelling) ---------------------------------------------------------------

IN_PROGRESS: Final = "IN_PROGRESS"
SUBMITTED: Final = "SUBMITTED"
ACCEPTED: Final = "ACCEPTED"
BACKORDERED: Final = "BACKORDERED"
COMPLETED: Final = "COMPLETED"
PARTIALLY_REFUNDED: Final = "PARTIALLY_REFUNDED"
REFUNDED: Final = "REFUNDED"
CANCELED: Final = "CANCELED"
REJECTED: Final = "REJECTED"

#: Every status, in the order of a bag's walk (SQL lists use this order).
STATUSES: Final[tuple[str, ...]] = (
    IN_PROGRESS,
    SUBMITTED,
    ACCEPTED,
    BACKORDERED,
    COMPLETED,
    PARTIALLY_REFUNDED,
    REFUNDED,
    CANCELED,
    REJECTED,
)

#: Nothing moves a bag out of these: the platform refused it, it was canceled, or fully refunded.
FINAL_STATUSES: Final = frozenset({REFUNDED, CANCELED, REJECTED})

#: How far along a bag is: every legal move goes to a higher rank, so news of a lower or equal
#: rank is old news (a late ACCEPTED after COMPLETED) and never moves a bag backwards. The
#: final statuses share the top rank: none of them follows another.
RANK: Final[dict[str, int]] = {
    IN_PROGRESS: 0,
    SUBMITTED: 1,
    ACCEPTED: 2,
    BACKORDERED: 3,
    COMPLETED: 4,
    PARTIALLY_REFUNDED: 5,
    REFUNDED: 6,
    CANCELED: 6,
    REJECTED: 6,
}

# Where each status may go. Skipping ahead is legal (the news in between may be lost); a
# rejection only happens while the platform decides on the bag; a cancel is possible until the
# bag is fully refunded (Violet: a completed order can still be canceled).
_NEXT: Final[dict[str, tuple[str, ...]]] = {
    IN_PROGRESS: (SUBMITTED, ACCEPTED, BACKORDERED, COMPLETED, CANCELED, REJECTED),
    SUBMITTED: (ACCEPTED, BACKORDERED, COMPLETED, PARTIALLY_REFUNDED, REFUNDED, CANCELED, REJECTED),
    ACCEPTED: (BACKORDERED, COMPLETED, PARTIALLY_REFUNDED, REFUNDED, CANCELED),
    BACKORDERED: (COMPLETED, PARTIALLY_REFUNDED, REFUNDED, CANCELED),
    COMPLETED: (PARTIALLY_REFUNDED, REFUNDED, CANCELED),
    PARTIALLY_REFUNDED: (REFUNDED, CANCELED),
}


def legal_moves() -> list[tuple[str, str]]:
    """Every (from, to) the declaration allows, sorted: the guard table's rows."""
    return sorted((source, dest) for source, dests in _NEXT.items() for dest in dests)


def is_status(status: str) -> bool:
    """Whether `status` is one of Violet's bag statuses this module knows."""
    return status in RANK


def is_final(status: str) -> bool:
    """Nothing moves a bag out of `status`."""
    return status in FINAL_STATUSES


def is_legal(current: str, new: str) -> bool:
    """Whether a bag may move from `current` to `new` (staying put is no move: False)."""
    return new in _NEXT.get(current, ())


def supersedes(current: str, current_at: datetime, new: str, new_at: datetime) -> bool:
    """Whether news that the bag was `new` at `new_at` replaces what is held (`current`, as of
    `current_at`).

    A different status replaces it only by a legal move, which always goes forward in `RANK`:
    news of an earlier status, however late it arrives, never moves a bag back, and news of a
    later status is taken even when it is older than what is held (the bag did get that far).
    The same status is replaced only by newer news (its amounts may have grown: a second partial
    refund).
    """
    if new == current:
        return new_at > current_at
    return is_legal(current, new)


# -- SQL ----------------------------------------------------------------------------------------


def sql_list(statuses: Iterable[str]) -> str:
    """`('A', 'B')` in declaration order: a status list for SQL text (statuses are plain words)."""
    chosen = set(statuses)
    unknown = chosen - set(STATUSES)
    if unknown:
        raise ValueError(f"not bag statuses: {sorted(unknown)}")
    return "(" + ", ".join(f"'{s}'" for s in STATUSES if s in chosen) + ")"
