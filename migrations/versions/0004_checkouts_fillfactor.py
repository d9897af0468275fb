"""Leave room in `checkouts` pages so claims and lease renewals can be HOT updates.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

A claim and a lease renewal change no indexed column (since this revision's code: the claim
keeps `next_attempt_at`, the renewal only moves `lease_expires_at`), so PostgreSQL can write the
new row version on the same page without touching the table's 8 indexes (a HOT update) -- if
the page has room. A fill factor of 90 keeps 10% of every page free for that. It applies to
pages written from now on; `VACUUM FULL checkouts` (or pg_repack) re-packs existing ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE checkouts SET (fillfactor = 90)")


def downgrade() -> None:
    op.execute("ALTER TABLE checkouts RESET (fillfactor)")
