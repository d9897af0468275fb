"""Per-merchant rate budgets: `violet_throttle` learns each merchant's pace from its 429s.

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-05

Violet passes each merchant platform's rate limit through as a 429 (a Shopify store: a bucket of
40 requests leaking 2 a second). One row per budget key (`global` for Violet's own limit,
`merchant:<id>` for each merchant) already holds until when the budget is closed; this revision
adds what pacing needs, shared by every process:

- `rate_per_s`: the calls a second the fleet allows itself for the merchant (NULL: not paced,
  no 429 seen yet). It is cut on a 429 and grows a little with every call let through (AIMD),
  so the fleet stays just under the store's limit instead of oscillating into it.
- `tokens`, `tokens_at`: a token bucket at that rate, as of `tokens_at`. Negative tokens are calls
  already given a later turn: a caller waits for its turn instead of trying and being refused.
- `calls`, `rate_limited`: calls let through and 429s answered, for `stats` and the console;
  `window_at`, `window_calls`: calls since the last 429 (the first 429 sets the rate from them);
  `decreased_at`: the last cut (one cut per round of calls answered 429 together).

The table stays small (a row per merchant ever called) and is read whole by `stats`.
A migration is a frozen copy: nothing is imported from the application.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    add = op.add_column
    add("violet_throttle", sa.Column("rate_per_s", sa.Float(), nullable=True))
    add("violet_throttle", sa.Column("tokens", sa.Float(), nullable=False, server_default="0"))
    add(
        "violet_throttle",
        sa.Column("tokens_at", _TS, nullable=False, server_default=sa.text("now()")),
    )
    add("violet_throttle", sa.Column("calls", sa.BigInteger(), nullable=False, server_default="0"))
    add(
        "violet_throttle",
        sa.Column("rate_limited", sa.BigInteger(), nullable=False, server_default="0"),
    )
    add("violet_throttle", sa.Column("last_rate_limited_at", _TS, nullable=True))
    add("violet_throttle", sa.Column("decreased_at", _TS, nullable=True))
    add(
        "violet_throttle",
        sa.Column("window_at", _TS, nullable=False, server_default=sa.text("now()")),
    )
    add(
        "violet_throttle",
        sa.Column("window_calls", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_check_constraint(
        op.f("ck_violet_throttle_rate_per_s"),
        "violet_throttle",
        "rate_per_s IS NULL OR rate_per_s > 0",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_violet_throttle_rate_per_s"), "violet_throttle", type_="check")
    for column in (
        "window_calls",
        "window_at",
        "decreased_at",
        "last_rate_limited_at",
        "rate_limited",
        "calls",
        "tokens_at",
        "tokens",
        "rate_per_s",
    ):
        op.drop_column("violet_throttle", column)
