"""The recovery job: finish every interrupted or retry-due checkout, by any number of workers.

It claims due checkouts (`next_attempt_at <= now()` and not under a live lease: a leased row's
`next_attempt_at` is never later than its lease expiry, so expired leases are found by the same
index scan) with ``FOR UPDATE SKIP LOCKED`` and drives
each with the runner, which reconciles an in-flight step before anything else. PostgreSQL is the
only coordinator, so copies on many machines never drive the same checkout at once, and the
shared rate budgets (the global one, each merchant's: store/budgets.py) pace all of them
together; with merchant budgets on, a claim takes turns across merchants (checkout_sql.py).

Before each claim it applies a small batch of pending webhook events (webhooks/apply.py), so a
`recover` loop covers webhooks too; an event that proves an in-flight submit happened makes that
checkout due, and the claim right after it reconciles it.

Its parts: `job` (the claim loop and its drives), `summary` (what a run reports), `waits` (sleeps
cut short by a stop, and opening with retry while the database is down).
"""

from __future__ import annotations

from orchestrator.recovery.job import MODES, Mode, RecoveryJob
from orchestrator.recovery.summary import RecoverySummary
from orchestrator.recovery.waits import Opens, open_with_retry

__all__ = ["MODES", "Mode", "Opens", "RecoveryJob", "RecoverySummary", "open_with_retry"]
