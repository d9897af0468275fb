"""Retention of the audit trail: strip the bulky parts of events older than the window.

The trail's skeleton (who, what, when, which call with which status, which error) is kept
forever; Violet's request and response summaries, large `detail` values and settled webhook
bodies are removed once they are older than the window (docs/operations.md, "Retention"). The
database decides what a pruned row is and refuses anything else (migration 0014); this job only
chooses the window and walks the rows left, in batches of one short transaction each, so a
busy shop keeps running beside it and a run killed at any point is finished by the next one.

It runs as the tables' owner (the role of `orchestrator db upgrade`): the application role may
not change the trail, and the database refuses it whatever it tries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from orchestrator.errors import InvalidRequest, OwnerRoleRequired
from orchestrator.store import retention as store
from orchestrator.store.query_runner import QueryRunner, connect
from orchestrator.store.retention import Pruned
from orchestrator.store.schema_names import AUDIT_RETENTION_MAX_DAYS

__all__ = ["MAX_BATCH", "PruneReport", "Pruned", "prune", "prune_with"]

logger = logging.getLogger(__name__)

MAX_BATCH: Final = 100_000
EVENTS: Final = "events"
INBOX: Final = "inbox"

#: Called after each committed batch with the table's name (`events`, `inbox`) and what it did.
BatchHook = Callable[[str, Pruned], None]


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What a prune removed, or with `dry_run` would remove: events and settled webhook events
    older than `cutoff` (the database's now() less `older_than_days`)."""

    older_than_days: int
    cutoff: datetime
    dry_run: bool
    events: Pruned
    inbox: Pruned
    batches: int = 0
    #: The tables vacuumed after the prune (`events`, `inbox`), so new rows reuse the space.
    vacuumed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        def part(pruned: Pruned) -> dict[str, Any]:
            return {
                "count": pruned.rows,
                "bytes": pruned.bytes,
                "oldest": _iso(pruned.oldest),
                "newest": _iso(pruned.newest),
            }

        return {
            "dry_run": self.dry_run,
            "older_than_days": self.older_than_days,
            "cutoff": _iso(self.cutoff),
            "events": part(self.events),
            "inbox": part(self.inbox),
            "batches": self.batches,
            "vacuumed": list(self.vacuumed),
        }


def _iso(value: datetime | None) -> str | None:
    from orchestrator.checkout import iso

    return iso(value)


def _check(older_than_days: int, batch: int) -> None:
    problems = []
    if not 1 <= older_than_days <= AUDIT_RETENTION_MAX_DAYS:
        problems.append(("older_than_days", f"must be between 1 and {AUDIT_RETENTION_MAX_DAYS}"))
    if not 1 <= batch <= MAX_BATCH:
        problems.append(("batch", f"must be between 1 and {MAX_BATCH}"))
    if problems:
        raise InvalidRequest(problems)


async def prune(
    database_url: str,
    *,
    older_than_days: int,
    batch: int = 1000,
    dry_run: bool = False,
    vacuum: bool = True,
    lock_timeout: float = 10.0,
    on_batch: BatchHook | None = None,
) -> PruneReport:
    """Prune the trail of the database at `database_url` (the owner's URL); see `prune_with`.

    Each statement waits at most `lock_timeout` seconds for a lock (a row the prune meets
    locked is skipped, never waited for).
    """
    _check(older_than_days, batch)
    async with connect(database_url) as runner:
        await runner.rows(
            "SELECT set_config('lock_timeout', %(ms)s, false)",
            {"ms": f"{max(1, round(lock_timeout * 1000))}ms"},
        )
        return await prune_with(
            runner,
            older_than_days=older_than_days,
            batch=batch,
            dry_run=dry_run,
            vacuum=vacuum,
            on_batch=on_batch,
        )


async def prune_with(
    runner: QueryRunner,
    *,
    older_than_days: int,
    batch: int = 1000,
    dry_run: bool = False,
    vacuum: bool = True,
    on_batch: BatchHook | None = None,
) -> PruneReport:
    """Strip events and settled webhook events older than `older_than_days`, `batch` rows per
    transaction, on an autocommit connection, then VACUUM each table it changed (unless
    `vacuum` is false) so the rows inserted next reuse the space; `dry_run` only counts what
    would go (any role that may read the tables).

    Raises OwnerRoleRequired (nothing changed) when the connected role lacks the owner's
    privileges, InvalidRequest for a window or batch out of bounds. Running it twice is a no-op
    the second time; after a kill, running it again finishes the work.
    """
    _check(older_than_days, batch)
    if not dry_run:
        owner, who, owner_name = await store.check_owner(runner)
        if not owner:
            raise OwnerRoleRequired(
                f"prune must run as the owner of the orchestrator's tables ({owner_name}, the role"
                f" that runs `orchestrator db upgrade`); connected as {who}, which may not change"
                " the audit trail. Nothing was changed"
            )
        await store.set_window(runner, older_than_days)
    before = await store.cutoff(runner, older_than_days)
    if dry_run:
        events = await store.plan_events(runner, before)
        inbox = await store.plan_inbox(runner, before)
        return PruneReport(older_than_days, before, True, events, inbox)
    totals = {EVENTS: store.NOTHING, INBOX: store.NOTHING}
    batches = 0
    for name, step in ((EVENTS, store.prune_events), (INBOX, store.prune_inbox)):
        while True:
            done = await step(runner, before, batch)
            if done.rows == 0:
                break
            batches += 1
            totals[name] += done
            logger.info(
                "pruned %d %s (%d bytes, %s .. %s)",
                done.rows,
                "events" if name == EVENTS else "webhook events",
                done.bytes,
                _iso(done.oldest),
                _iso(done.newest),
            )
            if on_batch is not None:
                on_batch(name, done)
            if done.rows < batch:
                break
    vacuumed = tuple(name for name, done in totals.items() if vacuum and done.rows)
    for name in vacuumed:
        await store.vacuum(runner, name)
    return PruneReport(
        older_than_days, before, False, totals[EVENTS], totals[INBOX], batches, vacuumed
    )
