"""Partial indexes for the one-statement `stats` and the metrics' gauges.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

- `ix_checkouts_open_state`: open checkouts' state, with `in_flight` carried along, so the
  counts per open state and the steps in flight come from one index-only scan of the open rows,
  whatever the history. Every column in it already changes only with a step write (which
  rewrites the indexed `next_attempt_at` anyway), so claims and lease renewals stay HOT updates.
- `ix_webhook_inbox_failed`: failed inbox events (rare), for their count and age.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_checkouts_open_state",
        "checkouts",
        ["state"],
        postgresql_include=["in_flight"],
        postgresql_where=sa.text("state NOT IN ('submitted', 'failed', 'canceled')"),
    )
    op.create_index(
        "ix_webhook_inbox_failed",
        "webhook_inbox",
        ["received_at"],
        postgresql_where=sa.text("state = 'failed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_inbox_failed", table_name="webhook_inbox")
    op.drop_index("ix_checkouts_open_state", table_name="checkouts")
