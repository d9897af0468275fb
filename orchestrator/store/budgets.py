"""Violet rate budgets shared by every process: one `violet_throttle` row per merchant, paced.

Violet passes each merchant platform's limit through as a 429 (a Shopify store: 40 requests
leaking 2 a second). A merchant's budget (key `merchant:<id>`) learns the pace the store allows
from its 429s: a token bucket whose rate is cut by `CUT` on a 429 (once per round of 429s) and
grows by `GROWTH` with every call let through (AIMD), so the fleet stays just under the store's
limit. A call takes its turn before it is sent (`take`): the turn may be now, a short wait the
caller sleeps, or further than the caller may wait, and then the checkout is deferred instead.
The `global` key stays the blunt block it always was (Violet's own limit): repository.throttle.

Every statement is one autocommitted round trip on an unlogged table (migration 0017: soft
state, committed without waiting for a WAL flush) of a row per merchant ever called; a budget
seen unpaced and open takes no statement per call for a while (`MerchantBudgets`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

__all__ = [
    "CUT",
    "GROWTH",
    "MERCHANT_PREFIX",
    "OPENS_AT",
    "Budget",
    "MerchantBudgets",
    "merchant_key",
    "unpaced_ttl",
]

log = logging.getLogger(__name__)

MERCHANT_PREFIX: Final = "merchant:"
#: A 429 cuts the rate to this share of what it was (at most once per round, see `_HOLD_CALLS`).
CUT: Final = 0.85
#: Each call let through raises the rate by this share: ~5% per 100 calls, so the fleet probes
#: back up to the store's limit within a few hundred calls of a cut. (Regrowing 4 times as fast
#: up to the rate of the last cut reached the store's rate but not a faster drain, and with
#: three processes had 10% of the calls answered 429: docs/performance.md.)
GROWTH: Final = 0.0005
#: While unpaced, a budget's calls are counted in windows of this many budget waits; the first
#: 429 paces from the last full window (or the current one, once half as long), so from the rate
#: that filled the store's bucket, not from the average since the merchant was first called.
_WINDOW_WAITS: Final = 4.0
#: Tokens a quiet merchant may save up: calls go evenly spaced, never in a burst.
_BURST: Final = 1.0
#: The longest a process trusts a budget it saw unpaced and open (`unpaced_ttl`), seconds.
_MAX_UNPACED_TTL: Final = 1.0
#: The slowest pace ever set (calls a second): a store that answers nothing but 429s.
_MIN_RATE: Final = 0.01
#: After a cut, 429s of calls already on their way are the same round: no second cut until this
#: many calls at the new rate, the Retry-After and the caller's budget wait (turns are handed out
#: that far ahead: their 429s are of the same round) have passed. (A gentler cut, 0.9,
#: held for 40 calls, drained 5% faster but had 3.6 times the 429s: docs/performance.md.)
_HOLD_CALLS: Final = 10


def unpaced_ttl(budget_wait: float) -> float:
    """How long a process trusts a budget it saw unpaced and open: a quarter of the longest wait
    a call may take for its turn, at most a second, so another process's first 429 for the
    merchant reaches it well within what any of its calls may wait anyway."""
    return min(_MAX_UNPACED_TTL, budget_wait / 4)


def merchant_key(merchant_id: int) -> str:
    return f"{MERCHANT_PREFIX}{merchant_id}"


#: When a budget row `t` next lets a call through (its block, or its next free token).
OPENS_AT: Final = (
    "greatest(t.blocked_until, CASE WHEN t.rate_per_s IS NULL OR t.tokens >= 1 "
    "THEN 'epoch'::timestamptz "
    "ELSE t.tokens_at + (1 - t.tokens) / t.rate_per_s * interval '1 second' END)"
)

# A call's turn on each of its merchants' budgets: reserved (tokens may go below zero: turns
# handed out) unless it is further than `max_wait`; `wait` is the longest of them. Rows are
# locked in key order (two multi-merchant calls never deadlock); a merchant never seen gets its
# row, unpaced, counting calls until its first 429. `extras` are calls this process let through
# on an unpaced budget without a statement (`MerchantBudgets.take`), counted now. One row per
# key: its wait, and whether it is unpaced and open (no 429 seen, nothing blocking it).
_TAKE_SQL = f"""
WITH req AS (
    SELECT k AS key, sum(e)::bigint AS extra
    FROM unnest(%(keys)s::text[], %(extras)s::bigint[]) AS u(k, e) GROUP BY k
), cur AS (
    SELECT t.key, t.rate_per_s AS rate, req.extra,
           least({_BURST}, t.tokens + greatest(0, extract(epoch FROM now() - t.tokens_at))
                 * coalesce(t.rate_per_s, 0)) AS avail,
           greatest(0, extract(epoch FROM t.blocked_until - now())) AS blocked_s,
           extract(epoch FROM now() - t.window_at)::float8 AS window_age
    FROM violet_throttle t JOIN req USING (key) ORDER BY t.key FOR UPDATE OF t
), judged AS (
    SELECT cur.*, greatest(blocked_s, CASE WHEN rate IS NULL OR avail >= 1 THEN 0
                                        ELSE (1 - avail) / rate END)::float8 AS wait
    FROM cur
), counted AS (
    SELECT judged.*, extra + CASE WHEN wait <= %(max_wait)s THEN 1 ELSE 0 END AS n,
           rate IS NULL AND window_age >= greatest(%(window_s)s, 0.001) AS rolls
    FROM judged
), upd AS (
    UPDATE violet_throttle t SET
        tokens = CASE WHEN j.rate IS NULL THEN 0
                      WHEN j.wait <= %(max_wait)s THEN j.avail - 1 ELSE j.avail END,
        tokens_at = now(),
        calls = t.calls + j.n,
        window_calls = CASE WHEN j.rolls THEN 0 ELSE t.window_calls + j.n END,
        window_at = CASE WHEN j.rolls THEN now() ELSE t.window_at END,
        window_rate = CASE WHEN j.rolls THEN (t.window_calls + j.n) / j.window_age
                           ELSE t.window_rate END,
        rate_per_s = CASE WHEN j.wait <= %(max_wait)s THEN j.rate * (1 + {GROWTH})
                          ELSE j.rate END,
        updated_at = now()
    FROM counted j WHERE t.key = j.key
), ins AS (
    INSERT INTO violet_throttle (key, blocked_until, calls, window_calls)
    SELECT key, 'epoch', 1 + extra, 1 + extra FROM req WHERE key NOT IN (SELECT key FROM cur)
    ORDER BY key ON CONFLICT (key) DO NOTHING
)
SELECT key, wait, rate IS NULL AND blocked_s = 0 AS unpaced FROM judged
UNION ALL
SELECT key, 0::float8, true FROM req WHERE key NOT IN (SELECT key FROM cur)
"""

# A 429 for a call of these merchants: counted; no call before `ra` seconds from now (turns
# already handed out keep theirs, new ones queue after); the rate cut, unless this is a 429 of
# the round already cut for. The first 429 sets the rate from the calls let through lately (the
# last full window's rate, or the current window's once it is half as long, whichever is the
# higher; less the cut), or one call per Retry-After when there were too few to tell.
_OLD_AVAIL = (
    f"least({_BURST}, t.tokens + greatest(0, extract(epoch FROM now() - t.tokens_at))"
    " * coalesce(t.rate_per_s, 0))"
)
_WINDOW_AGE = "extract(epoch FROM now() - t.window_at)"
_FIRST_RATE = (
    f"greatest({_MIN_RATE}, CASE"
    f" WHEN t.window_rate IS NOT NULL THEN {CUT} * greatest(t.window_rate, CASE"
    f" WHEN {_WINDOW_AGE} >= greatest(%(window_s)s / 2, 0.001)"
    f" THEN t.window_calls / {_WINDOW_AGE} ELSE 0 END)"
    f" WHEN t.window_calls >= 2 THEN {CUT} * t.window_calls"
    f" / greatest({_WINDOW_AGE}, %(ra)s, 0.001) ELSE 1 / %(ra)s END)"
)
_CUTTING = (
    "t.decreased_at IS NULL OR t.decreased_at < now() - greatest(%(ra)s, %(hold)s, "
    f"{_HOLD_CALLS} / t.rate_per_s) * interval '1 second'"
)
_NEW_RATE = (
    f"CASE WHEN t.rate_per_s IS NULL THEN {_FIRST_RATE} "
    f"WHEN {_CUTTING} THEN greatest({_MIN_RATE}, t.rate_per_s * {CUT}) ELSE t.rate_per_s END"
)
_RATE_LIMITED_SQL = f"""
INSERT INTO violet_throttle AS t (key, blocked_until, rate_limited, last_rate_limited_at,
    rate_per_s, decreased_at, tokens, tokens_at, window_at, window_calls)
SELECT k, now() + %(ra)s * interval '1 second', 1, now(), greatest({_MIN_RATE}, 1 / %(ra)s),
       now(), -1, now(), now(), 0
FROM (SELECT DISTINCT unnest(%(keys)s::text[]) AS k) AS keys ORDER BY k
ON CONFLICT (key) DO UPDATE SET
    rate_limited = t.rate_limited + 1,
    last_rate_limited_at = now(),
    blocked_until = greatest(t.blocked_until, EXCLUDED.blocked_until),
    rate_per_s = {_NEW_RATE},
    decreased_at = CASE WHEN t.rate_per_s IS NULL OR ({_CUTTING}) THEN now()
                        ELSE t.decreased_at END,
    tokens = least({_OLD_AVAIL}, -%(ra)s * ({_NEW_RATE})),
    tokens_at = now(),
    window_at = now(),
    window_calls = 0,
    window_rate = NULL,
    updated_at = now()
"""

# Calls let through on trusted budgets, added to their rows (locked in key order, as a take).
_FLUSH_SQL = """
WITH counted AS (
    SELECT k AS key, sum(n)::bigint AS n
    FROM unnest(%(keys)s::text[], %(extras)s::bigint[]) AS u(k, n) GROUP BY k
), locked AS (
    SELECT t.key FROM violet_throttle t JOIN counted USING (key) ORDER BY t.key FOR UPDATE OF t
)
UPDATE violet_throttle t SET calls = t.calls + c.n, window_calls = t.window_calls + c.n,
    updated_at = now()
FROM counted c JOIN locked USING (key) WHERE t.key = c.key
"""

_LIST_SQL = f"""
SELECT t.key, t.blocked_until, t.rate_per_s, t.calls, t.rate_limited, t.last_rate_limited_at,
       {OPENS_AT} AS opens_at, now() AS db_now, t.updated_at
FROM violet_throttle t ORDER BY t.key
"""


class _Runs(Protocol):
    async def rows(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget as stored: its key, pace and counts, and when it next lets a call through."""

    key: str
    #: Calls a second the fleet allows itself (None: not paced, no 429 seen).
    rate_per_s: float | None
    calls: int
    rate_limited: int
    last_rate_limited_at: datetime | None
    blocked_until: datetime
    #: When the next call may go (a block, or the next free turn), by the database's clock.
    opens_at: datetime
    #: The database's time when read: `open` compares to it, not to the local clock.
    read_at: datetime
    updated_at: datetime

    @property
    def merchant_id(self) -> int | None:
        if not self.key.startswith(MERCHANT_PREFIX):
            return None
        suffix = self.key.removeprefix(MERCHANT_PREFIX)
        return int(suffix) if suffix.isdigit() else None

    @property
    def open(self) -> bool:
        return self.opens_at <= self.read_at

    @property
    def closed_for_s(self) -> float:
        """Seconds until the next call may go (0: open)."""
        return max(0.0, (self.opens_at - self.read_at).total_seconds())


class MerchantBudgets:
    """The budget statements, over any runner of statements (a `Repository`, a query runner).

    With `unpaced_ttl` (a process's engine sets it), a budget the database last showed unpaced
    and open (no 429 ever answered, nothing blocking it: most merchants, most of the time) is
    trusted for that long: its calls go without a statement, counted here and added to its row
    by the next statement that reads it. A checkout's calls then cost no round trip each, and
    another process's first 429 for the merchant reaches this one within `unpaced_ttl`; this
    process's own 429 at once.
    """

    def __init__(self, runner: _Runs, *, unpaced_ttl: float = 0.0) -> None:
        self._runner = runner
        self._unpaced_ttl = unpaced_ttl
        #: Budgets shown unpaced and open: until when (monotonic clock) that is trusted.
        self._unpaced_until: dict[str, float] = {}
        #: Calls let through on a trusted budget, not yet added to its row.
        self._uncounted: Counter[str] = Counter()
        #: 429s this process was answered, per budget: a take that read the row before one of
        #: them was written must not trust what it read.
        self._limited: Counter[str] = Counter()

    async def take(self, keys: Sequence[str], *, max_wait: float) -> float:
        """A turn for one call on each budget of `keys`: seconds to wait before sending (0: now).
        A wait over `max_wait` reserves nothing: the caller defers instead of waiting."""
        keys = list(dict.fromkeys(keys))
        now = time.monotonic()
        if keys and all(self._unpaced_until.get(key, 0.0) > now for key in keys):
            self._uncounted.update(keys)
            return 0.0
        extras = [self._uncounted.pop(key, 0) for key in keys]
        params = {
            "keys": keys,
            "extras": extras,
            "max_wait": max_wait,
            "window_s": _WINDOW_WAITS * max_wait,
        }
        # A trust that ran out is renewed by this statement alone: the calls meanwhile keep it
        # for one more round trip instead of all sending the same statement.
        renewing = [key for key in keys if key in self._unpaced_until]
        limited = [self._limited[key] for key in keys]
        for key in renewing:
            self._unpaced_until[key] = now + self._unpaced_ttl
        try:
            rows = await self._runner.rows(_TAKE_SQL, params)
        except BaseException:
            self._uncounted.update(dict(zip(keys, extras, strict=True)))
            for key in renewing:
                self._unpaced_until.pop(key, None)
            raise
        unchanged = {key for key, n in zip(keys, limited, strict=True) if self._limited[key] == n}
        for row in rows:
            if row["unpaced"] and self._unpaced_ttl > 0 and row["key"] in unchanged:
                self._unpaced_until[row["key"]] = now + self._unpaced_ttl
            else:
                self._unpaced_until.pop(row["key"], None)
        return max((float(row["wait"]) for row in rows), default=0.0)

    async def flush(self) -> None:
        """Add the calls let through on trusted budgets to their rows now (a process closing,
        or going idle), so `stats` counts them without waiting for the next turn."""
        if not self._uncounted:
            return
        uncounted = dict(self._uncounted)
        self._uncounted.clear()
        keys = sorted(uncounted)
        params = {"keys": keys, "extras": [uncounted[key] for key in keys]}
        try:
            await self._runner.rows(_FLUSH_SQL, params)
        except BaseException:
            self._uncounted.update(uncounted)
            raise

    async def flush_quietly(self, within_s: float) -> None:
        """`flush`, best effort and bounded: the counts are a statistic, so a database that is
        down or slow loses them (logged at debug) and never holds a closing or idle process."""
        try:
            async with asyncio.timeout(within_s):
                await self.flush()
        except Exception as exc:
            # Imported here: `stats` reads budgets on a plain psycopg connection, and the
            # database module brings SQLAlchemy (tests/cli/test_startup_imports.py).
            from orchestrator.store import database

            if not (isinstance(exc, TimeoutError) or database.is_database_error(exc)):
                raise
            log.debug("merchant budgets: trusted calls not counted: %s", exc)

    async def rate_limited(
        self, keys: Sequence[str], retry_after: float, *, hold_s: float = 0.0
    ) -> None:
        """A 429 answered for a call of these budgets: counted, paced down, closed for
        `retry_after` seconds (the caller caps it: ORCHESTRATOR_MAX_RETRY_AFTER). `hold_s`: how
        far ahead the caller takes turns (its budget wait); 429s within it after a cut are of
        the calls already given turns at the old pace, and cut no further."""
        for key in keys:
            self._unpaced_until.pop(key, None)
            self._limited[key] += 1
        ra = max(retry_after, 0.001)
        hold = max(hold_s, 0.0)
        params = {"keys": list(keys), "ra": ra, "hold": hold, "window_s": _WINDOW_WAITS * hold}
        await self._runner.rows(_RATE_LIMITED_SQL, params)

    async def all(self) -> list[Budget]:
        """Every budget (the global one too), by key."""
        rows = await self._runner.rows(_LIST_SQL, None)
        return [
            Budget(
                key=r["key"],
                rate_per_s=r["rate_per_s"],
                calls=r["calls"],
                rate_limited=r["rate_limited"],
                last_rate_limited_at=r["last_rate_limited_at"],
                blocked_until=r["blocked_until"],
                opens_at=r["opens_at"],
                read_at=r["db_now"],
                updated_at=r["updated_at"],
            )
            for r in rows
        ]
