"""Audit queries for support, finance and operators: find checkouts, read timelines, count states.

Every query here is shaped for an index of migration 0001 (`created_at DESC`,
`(state, created_at DESC)`, the partial `next_attempt_at` and `last_error->>'type'` indexes), so
its cost follows the rows it returns, not the size of the history. `stats` is one statement over
the open rows' partial indexes and the planner's estimates (store/stats.py).

Each takes a SQLAlchemy engine (what a library user holds) or a `QueryRunner`: the CLI runs them
on a plain psycopg connection and starts without SQLAlchemy (store/query_runner.py).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestrator import states
from orchestrator.checkout import AuditEvent, Checkout, iso
from orchestrator.errors import CheckoutNotFound, InvalidRequest
from orchestrator.store import checkout_reads
from orchestrator.store import stats as store_stats
from orchestrator.store.budgets import Budget, MerchantBudgets
from orchestrator.store.query_runner import QueryRunner, as_runner
from orchestrator.store.records import ROW_COLUMNS, CheckoutRow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "Cursor",
    "FailureCount",
    "OldestCheckout",
    "SettleWindow",
    "Stats",
    "ThrottlePause",
    "budget_json",
    "failures_over_time",
    "find_checkout",
    "list_checkouts",
    "merchant_budgets",
    "stats",
    "throttle_pauses",
    "timeline",
]

MAX_LIMIT = 10_000


async def find_checkout(engine: AsyncEngine | QueryRunner, ref: uuid.UUID | str) -> Checkout:
    """A checkout by id, app_order_id or Violet order (cart) id; CheckoutNotFound otherwise.

    A reference pasted with spaces around it (from an e-mail, a ticket) is found all the same."""
    if isinstance(ref, str):
        ref = ref.strip()
    row = await checkout_reads.get(as_runner(engine), ref)
    if row is None:
        raise CheckoutNotFound.for_ref(ref)
    return Checkout.from_row(row)


async def timeline(engine: AsyncEngine | QueryRunner, ref: uuid.UUID | str) -> list[AuditEvent]:
    """A checkout's whole audit trail, oldest first (the primary key `(checkout_id, seq)`)."""
    runner = as_runner(engine)
    row = await checkout_reads.get(runner, ref)
    if row is None:
        raise CheckoutNotFound.for_ref(ref)
    return [AuditEvent.from_mapping(e) for e in await checkout_reads.events(runner, row.id)]


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of `list_checkouts` ended: its last checkout's creation time and id (the
    list's order), so the next page starts right after it however many rows arrive meanwhile."""

    created_at: datetime
    id: uuid.UUID

    @classmethod
    def after(cls, checkout: Checkout) -> Cursor:
        assert checkout.created_at is not None  # every stored checkout has one
        return cls(checkout.created_at, checkout.id)

    def token(self) -> str:
        """The cursor as one URL-safe string: `2024-05-01T12:00:00.123456Z~<uuid>`."""
        return f"{iso(self.created_at)}~{self.id}"

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """A cursor from `token()`; InvalidRequest naming `after` otherwise."""
        at, _, ident = token.partition("~")
        try:
            created_at = datetime.fromisoformat(at.replace("Z", "+00:00"))
            checkout_id = uuid.UUID(ident)
        except ValueError:
            raise InvalidRequest([("after", "not a page cursor of this list")]) from None
        if created_at.tzinfo is None:
            raise InvalidRequest([("after", "not a page cursor of this list")])
        return cls(created_at, checkout_id)


@dataclass(frozen=True, slots=True)
class SettleWindow:
    """How long a step whose outcome is unknown may still be running at Violet: its request
    may leave for `send` seconds after the step started (or until the sender's own stored bound,
    `step_send_by`, when later) and land `settle` seconds after that (engine/runner.py)."""

    send: float
    settle: float

    @classmethod
    def of(cls, total_timeout: float, settle_seconds: float) -> SettleWindow:
        """The runner's window for these settings (`VIOLET_TOTAL_TIMEOUT`,
        `ORCHESTRATOR_SUBMIT_SETTLE_SECONDS`): a step makes at most two calls before its write."""
        return cls(send=2 * total_timeout, settle=settle_seconds)


_NOT_FINISHED = f"state NOT IN {states.TERMINAL_SQL}"

#: Stuck in flight: an open checkout whose step's outcome is not recorded while no live worker
#: holds it (its lease is free or expired), or whose step is older than its settle window (its
#: request cannot still be running at Violet, yet no outcome came). Recovery settles both; a
#: checkout that stays here is one recovery is not reaching. `_NOT_FINISHED` lets the partial
#: index `ix_checkouts_open_created_at` serve it: its cost follows the open checkouts.
_STUCK = f"""{_NOT_FINISHED} AND in_flight AND (
    lease_owner IS NULL OR lease_expires_at < now()
    OR greatest(step_started_at + %(send_s)s * interval '1 second', step_send_by)
       + %(settle_s)s * interval '1 second' < now())"""


async def list_checkouts(
    engine: AsyncEngine | QueryRunner,
    *,
    state: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    error_type: str | None = None,
    failed: bool = False,
    merchant_id: int | None = None,
    waiting: bool = False,
    stuck: SettleWindow | None = None,
    unfinished: bool = False,
    after: Cursor | None = None,
    limit: int = 50,
) -> list[Checkout]:
    """Checkouts newest first, filtered by state, creation time range, last error type, merchant
    (any bag of it), waiting for input, stuck in flight (by `stuck`'s window; see `_STUCK`), not
    finished yet (`unfinished`); `after` continues a list from its last page's last checkout.

    ``failed=True`` is shorthand for ``state="failed"``. Bad filters raise InvalidRequest
    before any SQL runs. Every filter is served by an index but the merchant, which is checked
    on the rows the others select (see docs/console.md).
    """
    problems: list[tuple[str, str]] = []
    if failed:
        if state not in (None, states.FAILED):
            problems.append(("state", f"{state!r} contradicts failed=True"))
        state = states.FAILED
    if state is not None and state not in states.STATES:
        problems.append(("state", f"unknown state {state!r}; one of {', '.join(states.STATES)}"))
    if waiting and state is not None and state not in states.WAITING_STATES:
        problems.append(("state", f"{state!r} is not a state that waits for input"))
    if (stuck is not None or unfinished) and state in states.TERMINAL_STATES:
        problems.append(("state", f"a {state} checkout is finished"))
    if not 1 <= limit <= MAX_LIMIT:
        problems.append(("limit", f"must be between 1 and {MAX_LIMIT}"))
    if merchant_id is not None and not 1 <= merchant_id < 2**63:
        problems.append(("merchant_id", "must be a positive integer"))
    if error_type is not None and not error_type.strip():
        problems.append(("error_type", "must not be empty"))
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            problems.append((name, "must carry a time zone (e.g. 2024-05-01T00:00:00Z)"))
    if problems:
        raise InvalidRequest(problems)

    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if state is not None:
        where.append("state = %(state)s")
        params["state"] = state
    if waiting:
        # `_NOT_FINISHED` too, so the open checkouts' partial index serves the three at once.
        where.append(f"state IN {states.sql_list(states.WAITING_STATES)} AND {_NOT_FINISHED}")
    if unfinished:
        where.append(_NOT_FINISHED)
    if stuck is not None:
        where.append(_STUCK)
        params["send_s"] = stuck.send
        params["settle_s"] = stuck.settle
    if since is not None:
        where.append("created_at >= %(since)s")
        params["since"] = since
    if until is not None:
        where.append("created_at < %(until)s")
        params["until"] = until
    if error_type is not None:
        # Both conditions, so the planner can use the partial `last_error->>'type'` index.
        where.append("last_error IS NOT NULL AND last_error->>'type' = %(error_type)s")
        params["error_type"] = error_type
    if merchant_id is not None:
        where.append("bags @> %(merchant)s::jsonb")
        params["merchant"] = json.dumps([{"merchant_id": merchant_id}])
    if after is not None:
        # The first condition alone is what an index on created_at can seek to.
        where.append(
            "created_at <= %(after_at)s AND (created_at < %(after_at)s OR id < %(after_id)s)"
        )
        params["after_at"] = after.created_at
        params["after_id"] = after.id
    sql = f"SELECT {ROW_COLUMNS} FROM checkouts"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
    rows = await as_runner(engine).rows(sql, params)
    return [Checkout.from_row(CheckoutRow.from_mapping(row)) for row in rows]


@dataclass(frozen=True, slots=True)
class FailureCount:
    """Failed checkouts of one error type created in one time bucket."""

    bucket: datetime
    error_type: str
    count: int


#: Failed checkouts per error type per bucket: the range of `ix_checkouts_state_created_at`
#: under `state = 'failed'`, so its cost follows the failures in the window.
_FAILURES_SQL = f"""
SELECT to_timestamp(floor(extract(epoch FROM created_at) / %(bucket_s)s) * %(bucket_s)s)
         AS bucket,
       coalesce(last_error->>'type', 'unknown') AS error_type,
       count(*) AS n
FROM checkouts
WHERE state = '{states.FAILED}' AND created_at >= %(since)s
GROUP BY 1, 2
ORDER BY 1, 2
"""


async def failures_over_time(
    engine: AsyncEngine | QueryRunner, *, since: datetime, bucket_seconds: int
) -> list[FailureCount]:
    """Failed checkouts per error type, bucketed by creation time since `since` (a failure
    follows its creation within the retry policy's hour or so), oldest bucket first."""
    problems: list[tuple[str, str]] = []
    if since.tzinfo is None:
        problems.append(("since", "must carry a time zone (e.g. 2024-05-01T00:00:00Z)"))
    if not 60 <= bucket_seconds <= 7 * 86400:
        problems.append(("bucket_seconds", "must be between 60 and 604800"))
    if problems:
        raise InvalidRequest(problems)
    rows = await as_runner(engine).rows(_FAILURES_SQL, {"since": since, "bucket_s": bucket_seconds})
    return [FailureCount(r["bucket"], str(r["error_type"]), int(r["n"])) for r in rows]


@dataclass(frozen=True, slots=True)
class ThrottlePause:
    """A pause Violet asked for (HTTP 429) that every worker honours: its key (the merchant or
    the app), until when, and when it was last set."""

    key: str
    blocked_until: datetime
    updated_at: datetime
    active: bool


# A row per key ever throttled (the app, each merchant): a small table, read whole.
_THROTTLE_SQL = """
SELECT key, blocked_until, updated_at, blocked_until > now() AS active
FROM violet_throttle
ORDER BY blocked_until DESC, key
LIMIT %(limit)s
"""


async def throttle_pauses(
    engine: AsyncEngine | QueryRunner, *, limit: int = 100
) -> list[ThrottlePause]:
    """Violet's 429 pauses (`violet_throttle`), the latest-ending first; `active` ones still
    hold every worker back."""
    rows = await as_runner(engine).rows(_THROTTLE_SQL, {"limit": limit})
    return [
        ThrottlePause(
            key=str(r["key"]),
            blocked_until=r["blocked_until"],
            updated_at=r["updated_at"],
            active=bool(r["active"]),
        )
        for r in rows
    ]


async def merchant_budgets(engine: AsyncEngine | QueryRunner) -> list[Budget]:
    """Every Violet rate budget (`global` and each `merchant:<id>`), by key: its pace, calls let
    through, 429s answered, and when it next lets a call through (`stats`, the console, metrics)."""
    return await MerchantBudgets(as_runner(engine)).all()


def budget_json(budget: Budget) -> dict[str, Any]:
    """One budget as `stats --json` shows it."""
    return {
        "key": budget.key,
        "merchant_id": budget.merchant_id,
        "open": budget.open,
        "closed_for_s": round(budget.closed_for_s, 3),
        "rate_per_s": budget.rate_per_s,
        "calls": budget.calls,
        "rate_limited": budget.rate_limited,
        "last_rate_limited_at": iso(budget.last_rate_limited_at),
    }


@dataclass(frozen=True, slots=True)
class OldestCheckout:
    """The longest-running unfinished checkout: the first thing an operator looks at."""

    id: uuid.UUID
    app_order_id: str
    state: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "app_order_id": self.app_order_id,
            "state": self.state,
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts an operator needs at a glance; `by_state` lists every state, zeros included."""

    by_state: dict[str, int]
    due_now: int
    waiting_for_input: int
    leased: int
    oldest_non_terminal: OldestCheckout | None
    at: datetime
    #: States whose count is the planner's estimate (terminal states of a large table).
    estimated: tuple[str, ...] = ()
    total: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", sum(self.by_state.values()))

    @property
    def non_terminal(self) -> int:
        return sum(n for s, n in self.by_state.items() if s not in states.TERMINAL_STATES)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "total": self.total,
            "by_state": dict(self.by_state),
            "non_terminal": self.non_terminal,
            "due_now": self.due_now,
            "waiting_for_input": self.waiting_for_input,
            "leased": self.leased,
            "oldest_non_terminal": (
                None if self.oldest_non_terminal is None else self.oldest_non_terminal.to_json()
            ),
            "estimated": list(self.estimated),
        }


#: Kept as the name callers know; the rule lives with the statement (store/stats.py).
EXACT_COUNT_LIMIT = store_stats.EXACT_COUNT_LIMIT


async def stats(
    engine: AsyncEngine | QueryRunner, *, exact: bool = False, exact_below: int = EXACT_COUNT_LIMIT
) -> Stats:
    """Counts per state, checkouts due now, waiting for input, leased, oldest non-terminal, in
    one statement (store/stats.py); finished states of a large table are estimated.

    "Due now" is what the recovery job would claim right now (retry due or lease expired);
    "leased" is what some worker is driving at this moment.
    """
    found = await store_stats.read(as_runner(engine), exact=exact, exact_below=exact_below)
    oldest = found.oldest
    return Stats(
        by_state=found.by_state,
        due_now=found.due_now,
        waiting_for_input=found.waiting_for_input,
        leased=found.leased,
        oldest_non_terminal=None
        if oldest is None
        else OldestCheckout(
            id=oldest.id,
            app_order_id=oldest.app_order_id,
            state=oldest.state,
            created_at=oldest.created_at,
        ),
        at=found.at,
        estimated=found.estimated,
    )
