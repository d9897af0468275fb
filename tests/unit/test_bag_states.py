"""The bag graph: every move goes forward, nothing leaves a final status, old news is dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator import bag_states as bags

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EARLIER = T0 - timedelta(minutes=5)
LATER = T0 + timedelta(minutes=5)


def test_every_status_has_a_rank_and_every_move_goes_up() -> None:
    assert set(bags.RANK) == set(bags.STATUSES)
    for source, dest in bags.legal_moves():
        assert bags.RANK[dest] > bags.RANK[source], (source, dest)


def test_nothing_leaves_a_final_status_and_every_other_status_can_end() -> None:
    sources = {source for source, _ in bags.legal_moves()}
    assert not sources & bags.FINAL_STATUSES
    for status in set(bags.STATUSES) - bags.FINAL_STATUSES:
        assert bags.is_legal(status, bags.CANCELED) or bags.is_legal(status, bags.REFUNDED)
    assert all(bags.is_final(status) for status in bags.FINAL_STATUSES)
    assert not bags.is_final(bags.COMPLETED)


def test_moves_name_known_statuses_only() -> None:
    for source, dest in bags.legal_moves():
        assert bags.is_status(source) and bags.is_status(dest)
    assert not bags.is_status("SHIPPED")


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (bags.COMPLETED, bags.ACCEPTED),
        (bags.ACCEPTED, bags.SUBMITTED),
        (bags.REFUNDED, bags.PARTIALLY_REFUNDED),
        (bags.CANCELED, bags.ACCEPTED),
        (bags.COMPLETED, bags.REJECTED),  # a bag the platform took cannot be rejected later
        (bags.ACCEPTED, bags.ACCEPTED),
    ],
)
def test_illegal_moves(current: str, new: str) -> None:
    assert not bags.is_legal(current, new)


def test_late_news_of_an_earlier_status_never_moves_a_bag_back() -> None:
    assert not bags.supersedes(bags.COMPLETED, T0, bags.ACCEPTED, LATER)
    assert not bags.supersedes(bags.COMPLETED, T0, bags.ACCEPTED, EARLIER)


def test_news_of_a_later_status_is_taken_even_when_older() -> None:
    """A read-back saw ACCEPTED; a delayed webhook from before it says COMPLETED: impossible in
    time order, but the bag did get to COMPLETED, so the move forward is taken."""
    assert bags.supersedes(bags.ACCEPTED, T0, bags.COMPLETED, LATER)
    assert bags.supersedes(bags.ACCEPTED, T0, bags.COMPLETED, EARLIER)


def test_the_same_status_is_replaced_only_by_newer_news() -> None:
    assert bags.supersedes(bags.PARTIALLY_REFUNDED, T0, bags.PARTIALLY_REFUNDED, LATER)
    assert not bags.supersedes(bags.PARTIALLY_REFUNDED, T0, bags.PARTIALLY_REFUNDED, T0)
    assert not bags.supersedes(bags.PARTIALLY_REFUNDED, T0, bags.PARTIALLY_REFUNDED, EARLIER)


def test_sql_list_is_in_declaration_order_and_refuses_strangers() -> None:
    assert bags.sql_list(bags.FINAL_STATUSES) == "('REFUNDED', 'CANCELED', 'REJECTED')"
    with pytest.raises(ValueError, match="SHIPPED"):
        bags.sql_list(["SHIPPED"])
