"""`violet_throttle.window_rate`: the pace a merchant took in its last full window while unpaced.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

A merchant's first 429 sets its pace from the calls it was sent before. Counted since its row
was made, that is the average over a backlog's whole start, when the merchant may have had a
small share of the workers: in `bench.merchants` the busiest merchant's first pace was 55 calls a
second for a store leaking 100, and took 17 s of a 67 s drain to grow back. While unpaced, the
count now rolls over in windows of a few budget waits, and `window_rate` keeps the last full
window's calls a second: the first 429 paces from the recent rate, the one that filled the
store's bucket. Soft state like the rest of the table (unlogged, migration 0017).
A migration is a frozen copy: nothing is imported from the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("violet_throttle", sa.Column("window_rate", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("violet_throttle", "window_rate")
