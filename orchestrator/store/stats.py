"""Every number an operator's overview and the metrics' gauges show, in one statement.

One round trip, each part served by an index whose size follows the open work, not the history:
- counts per open state and steps in flight: one index-only scan of `ix_checkouts_open_state`
  (migration 0015), which holds the open rows alone;
- counts per finished state: the planner's estimate (`pg_class.reltuples` times the state's
  frequency in `pg_stats`) once the table holds `exact_below` rows or more, an exact count of
  the `ix_checkouts_state_created_at` range otherwise (and for a state too rare to be among the
  statistics' most common values); a `CASE` evaluates the count only where it is needed;
- due now and leased: the range of `ix_checkouts_due` up to `now() + LEASE_HORIZON_S`, because
  a step write under a lease sets `next_attempt_at` to the lease's expiry and a claim of a due
  row keeps a past one (store/checkout_sql.py), and a lease lasts at most that long. One case
  escapes it: a checkout claimed by id (`run`) while its retry was scheduled more than a day
  ahead is not counted as leased until its first step write, seconds later;
- the oldest open checkout: the first entry of `ix_checkouts_open_created_at`;
- Violet's 429 pauses in force (`violet_throttle`, one row per key), and the webhook inbox's
  pending and failed events (their partial indexes).

It runs on a `QueryRunner` (the CLI's plain psycopg connection, or a SQLAlchemy engine).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from orchestrator import states
from orchestrator.store.query_runner import QueryRunner

__all__ = ["EXACT_COUNT_LIMIT", "LEASE_HORIZON_S", "STATS_SQL", "Oldest", "Snapshot", "read"]

#: Above this many rows, frequent finished states are counted from the planner's statistics: an
#: exact count of a million finished checkouts scans a million index entries (~60 ms), while
#: operators need the open counts exact and the finished ones only roughly.
EXACT_COUNT_LIMIT: Final = 100_000

#: The longest lease a worker may take (`ORCHESTRATOR_LEASE_SECONDS` is at most a day): no leased
#: row is due later than this from now, so the leased count reads only the due index's range.
LEASE_HORIZON_S: Final = 86_400.0

_TERMINAL = states.TERMINAL_SQL
_FINISHED = [s for s in states.STATES if s in states.TERMINAL_STATES]

STATS_SQL: Final = f"""
WITH open_counts AS (
    SELECT state, count(*) AS n, count(*) FILTER (WHERE in_flight) AS in_flight
    FROM checkouts
    WHERE state NOT IN {_TERMINAL}
    GROUP BY state
), table_size AS (
    SELECT greatest(reltuples, 0)::bigint AS total FROM pg_class
    WHERE oid = 'checkouts'::regclass
), frequent AS (
    SELECT v.state, v.freq
    FROM pg_stats st
    CROSS JOIN LATERAL unnest(st.most_common_vals::text::text[], st.most_common_freqs)
        AS v(state, freq)
    WHERE st.schemaname = current_schema() AND st.tablename = 'checkouts'
      AND st.attname = 'state'
), finished AS (
    SELECT f.state, e.estimated,
           CASE WHEN e.estimated THEN round(s.total * fr.freq)::bigint
                ELSE (SELECT count(*) FROM checkouts c WHERE c.state = f.state) END AS n
    FROM unnest(%(finished)s::text[]) AS f(state)
    CROSS JOIN table_size s
    LEFT JOIN frequent fr ON fr.state = f.state
    CROSS JOIN LATERAL (
        SELECT fr.freq IS NOT NULL AND NOT %(exact)s AND s.total >= %(exact_below)s AS estimated
    ) AS e
), work AS (
    SELECT
        count(*) FILTER (
            WHERE next_attempt_at <= now() AND (lease_owner IS NULL OR lease_expires_at < now())
        ) AS due_now,
        count(*) FILTER (WHERE lease_owner IS NOT NULL AND lease_expires_at >= now()) AS leased
    FROM checkouts
    WHERE next_attempt_at <= now() + %(horizon_s)s * interval '1 second'
      AND state NOT IN {_TERMINAL}
), oldest AS (
    SELECT id, app_order_id, state, created_at FROM checkouts
    WHERE state NOT IN {_TERMINAL}
    ORDER BY created_at LIMIT 1
)
SELECT
    now() AS at,
    (SELECT coalesce(jsonb_object_agg(state, n), '{{}}') FROM open_counts) AS open_counts,
    (SELECT coalesce(sum(in_flight), 0)::bigint FROM open_counts) AS in_flight,
    (SELECT jsonb_object_agg(state, n) FROM finished) AS finished_counts,
    (SELECT coalesce(array_agg(state), '{{}}') FROM finished WHERE estimated) AS estimated,
    w.due_now, w.leased,
    o.id AS oldest_id, o.app_order_id AS oldest_app_order_id, o.state AS oldest_state,
    o.created_at AS oldest_created_at,
    (SELECT count(*) FROM violet_throttle WHERE blocked_until > now()) AS throttled_keys,
    (SELECT max(blocked_until) FROM violet_throttle) AS throttled_until,
    (SELECT count(*) FROM webhook_inbox WHERE state = 'pending') AS inbox_pending,
    (SELECT min(received_at) FROM webhook_inbox WHERE state = 'pending') AS inbox_oldest_pending,
    (SELECT count(*) FROM webhook_inbox WHERE state = 'failed') AS inbox_failed
FROM work w LEFT JOIN oldest o ON true
"""


@dataclass(frozen=True, slots=True)
class Oldest:
    """The longest-running open checkout."""

    id: uuid.UUID
    app_order_id: str
    state: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What `read` found, at the database's `at`."""

    at: datetime
    by_state: dict[str, int]
    #: Finished states whose count is the planner's estimate.
    estimated: tuple[str, ...]
    due_now: int
    leased: int
    #: Open checkouts whose step's outcome is not recorded yet (a call may be at Violet).
    in_flight: int
    oldest: Oldest | None
    throttled_keys: int
    throttled_until: datetime | None
    inbox_pending: int
    inbox_oldest_pending: datetime | None
    inbox_failed: int

    @property
    def waiting_for_input(self) -> int:
        return sum(self.by_state[s] for s in states.WAITING_STATES)


def _mapping(value: Any) -> dict[str, int]:
    if value is None:
        return {}
    data = json.loads(value) if isinstance(value, str | bytes) else value
    return {str(k): int(v) for k, v in data.items()}


async def read(
    runner: QueryRunner, *, exact: bool = False, exact_below: int = EXACT_COUNT_LIMIT
) -> Snapshot:
    """The snapshot, in one statement (`exact`: count every state, whatever the table's size)."""
    params = {
        "finished": _FINISHED,
        "exact": exact,
        "exact_below": exact_below,
        "horizon_s": LEASE_HORIZON_S,
    }
    (row,) = await runner.rows(STATS_SQL, params)
    counts = {**_mapping(row["open_counts"]), **_mapping(row["finished_counts"])}
    oldest = None
    if row["oldest_id"] is not None:
        oldest = Oldest(
            id=row["oldest_id"],
            app_order_id=str(row["oldest_app_order_id"]),
            state=str(row["oldest_state"]),
            created_at=row["oldest_created_at"],
        )
    return Snapshot(
        at=row["at"],
        by_state={s: counts.get(s, 0) for s in states.STATES},
        estimated=tuple(s for s in _FINISHED if s in set(row["estimated"] or ())),
        due_now=int(row["due_now"]),
        leased=int(row["leased"]),
        in_flight=int(row["in_flight"]),
        oldest=oldest,
        throttled_keys=int(row["throttled_keys"]),
        throttled_until=row["throttled_until"],
        inbox_pending=int(row["inbox_pending"]),
        inbox_oldest_pending=row["inbox_oldest_pending"],
        inbox_failed=int(row["inbox_failed"]),
    )
