"""Store with each step's intent the last instant its request may leave: `step_send_by`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24

Create-cart, a card payment and the submit are redone after a lost answer only once the step is
older than the settle window. The process that sends the request bounds how late it may leave
by its own Violet timeouts (its send window, violet/gate.py), which the process reconciling the
step need not share: API workers and a `recover` job may run with different settings. So the
sender writes `now() + its send window` into `step_send_by` in the same statement that sets
`step_started_at`, and the reconciler waits at least until then plus its settle time.

NULL: the step was started by code that did not store it (or no step is in flight); the
reconciler then relies on its own window. The column changes only with a write that starts a
step, never with a finished checkout's terminal write, so the freeze of finished rows (0005,
`orchestrator_guard_finished`, which compares every column) covers it with no entry in
`ALLOWED_AFTER_FINISH`.
A migration is a frozen copy: nothing is imported from the application.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE checkouts ADD COLUMN step_send_by timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE checkouts DROP COLUMN step_send_by")
