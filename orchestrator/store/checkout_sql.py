"""The SQL text of the checkout statements: inserts, step writes, claims, throttle.

Plain SQL sent with `exec_driver_sql` or psycopg (no per-call compilation). The step writes are
data-modifying CTEs: one statement updates the row fenced by its lease epoch, appends its
events and, when it makes one, the feed's change. Each stays under 4 kB, the longest statement
psycopg caches the parse of (tests/unit/test_write_statement_size.py).
"""

from __future__ import annotations

from orchestrator import states
from orchestrator.store import budgets, changes
from orchestrator.store.records import ROW_COLUMNS

_EVENT_COLUMNS = (
    "seq int, kind text, from_state text, to_state text, step text, attempt int, "
    "http_method text, http_path text, http_status int, latency_ms real, request_body jsonb, "
    "response_body jsonb, error_class text, error_type text, error_message text, detail jsonb"
)
_EVENT_NAMES = (
    "seq, kind, from_state, to_state, step, attempt, http_method, http_path, http_status, "
    "latency_ms, request_body, response_body, error_class, error_type, error_message, detail"
)
_E_EVENT_NAMES = ", ".join("e." + name.strip() for name in _EVENT_NAMES.split(","))

_INSERT_EVENTS = f"""
    INSERT INTO checkout_events (checkout_id, worker, {_EVENT_NAMES})
    SELECT %(id)s, %(worker)s, {_E_EVENT_NAMES}
    FROM upd, jsonb_to_recordset(%(events)s::jsonb) AS e({_EVENT_COLUMNS})
"""

LEASE_UNTIL = "now() + %(lease_s)s * interval '1 second'"
_BATCH_LEASE_UNTIL = "now() + d.lease_s * interval '1 second'"
# When a step's request must have left by: the sender's send window from the step's start.
_SEND_BY = "now() + %(send_s)s * interval '1 second'"
_BATCH_SEND_BY = "now() + d.send_s * interval '1 second'"

INSERT_SQL = f"""
WITH upd AS (
    INSERT INTO checkouts (
        id, app_order_id, state, request, payment_kind, currency, pending_step, in_flight,
        attempt, step_started_at, step_send_by, lease_owner, lease_expires_at, lease_epoch,
        next_attempt_at, event_seq
    ) VALUES (
        %(id)s, %(app_order_id)s, '{states.INITIAL}', %(request)s::jsonb, %(payment_kind)s,
        %(currency)s, %(pending_step)s, %(in_flight)s, %(attempt)s,
        CASE WHEN %(in_flight)s THEN now() END,
        CASE WHEN %(in_flight)s THEN {_SEND_BY} END,
        %(lease_owner)s, CASE WHEN %(lease_owner)s::text IS NOT NULL THEN {LEASE_UNTIL} END,
        CASE WHEN %(lease_owner)s::text IS NOT NULL THEN 1 ELSE 0 END,
        CASE WHEN %(lease_owner)s::text IS NOT NULL THEN {LEASE_UNTIL} ELSE now() END,
        %(event_seq)s
    )
    ON CONFLICT (app_order_id) DO NOTHING
    RETURNING {ROW_COLUMNS}, now() AS db_now
), ev AS ({_INSERT_EVENTS})
SELECT * FROM upd
"""

# Several new checkouts in one statement (group commit, like the step writes).
INSERT_MANY_SQL = f"""
WITH d AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS d(
        id uuid, app_order_id text, request jsonb, payment_kind text, currency text,
        pending_step text, in_flight bool, attempt int, lease_owner text, lease_s float8,
        send_s float8, event_seq int)
), upd AS (
    INSERT INTO checkouts (
        id, app_order_id, state, request, payment_kind, currency, pending_step, in_flight,
        attempt, step_started_at, step_send_by, lease_owner, lease_expires_at, lease_epoch,
        next_attempt_at, event_seq
    )
    SELECT
        d.id, d.app_order_id, '{states.INITIAL}', d.request, d.payment_kind, d.currency,
        d.pending_step, d.in_flight, d.attempt, CASE WHEN d.in_flight THEN now() END,
        CASE WHEN d.in_flight THEN {_BATCH_SEND_BY} END, d.lease_owner,
        CASE WHEN d.lease_owner IS NOT NULL THEN {_BATCH_LEASE_UNTIL} END,
        CASE WHEN d.lease_owner IS NOT NULL THEN 1 ELSE 0 END,
        CASE WHEN d.lease_owner IS NOT NULL THEN {_BATCH_LEASE_UNTIL} ELSE now() END,
        d.event_seq
    FROM d ORDER BY d.app_order_id
    ON CONFLICT (app_order_id) DO NOTHING
    RETURNING {ROW_COLUMNS}, now() AS db_now
), ev AS (
    INSERT INTO checkout_events (checkout_id, worker, {_EVENT_NAMES})
    SELECT e.checkout_id, e.worker, {_E_EVENT_NAMES}
    FROM jsonb_to_recordset(%(events)s::jsonb) AS e(checkout_id uuid, worker text, {_EVENT_COLUMNS})
    JOIN upd ON upd.id = e.checkout_id
)
SELECT * FROM upd
"""


def _append_change(checkout_id: str, new_state: str, old: str, source: str) -> str:
    """The CTE that appends a write's change (`c`, from `checkout_params.change`) in the
    write's statement, so the feed holds it exactly when the write is stored; `source` yields a
    row only when the fenced update was made. Appended once: by the write that enters the
    terminal state, or the one that starts a wait (a waiting row written again, its lease
    released say, is no change). Kept short: psycopg caches the parse of a statement of up to
    4 kB only."""
    return f"""
    INSERT INTO checkout_changes (checkout_id, app_order_id, kind, detail)
    SELECT {checkout_id}, {old}app_order_id, c.kind, c.detail FROM {source}
    WHERE c.kind IS NOT NULL AND ({new_state} IS DISTINCT FROM {old}state
        OR c.kind = '{changes.CHECKOUT_WAITING}' AND {old}waiting_reason IS NULL)
"""


WRITE_SQL = f"""
WITH upd AS (
    UPDATE checkouts SET
        state = %(state)s,
        version = version + 1,
        pending_step = %(pending_step)s,
        in_flight = %(in_flight)s,
        step_no = %(step_no)s,
        attempt = %(attempt)s,
        step_started_at = CASE WHEN %(start_step)s THEN now() ELSE step_started_at END,
        step_send_by = CASE WHEN %(start_step)s THEN {_SEND_BY} ELSE step_send_by END,
        lease_owner = %(lease_owner)s,
        lease_expires_at = CASE
            WHEN %(lease_owner)s::text IS NULL THEN NULL ELSE {LEASE_UNTIL} END,
        next_attempt_at = CASE
            WHEN %(lease_owner)s::text IS NOT NULL THEN {LEASE_UNTIL}
            WHEN %(due_in)s::float8 IS NULL THEN NULL
            ELSE now() + %(due_in)s * interval '1 second' END,
        recoveries = %(recoveries)s,
        event_seq = %(event_seq)s,
        violet_order_id = %(violet_order_id)s,
        sub_total = %(sub_total)s,
        shipping_total = %(shipping_total)s,
        tax_total = %(tax_total)s,
        discount_total = %(discount_total)s,
        total = %(total)s,
        bags = %(bags)s::jsonb,
        violet_status = %(violet_status)s,
        waiting_reason = %(waiting_reason)s,
        last_error = %(last_error)s::jsonb,
        updated_at = now(),
        finished_at = CASE WHEN %(terminal)s THEN now() END
    WHERE id = %(id)s AND lease_epoch = %(lease_epoch)s
    RETURNING version, next_attempt_at, lease_expires_at, step_started_at, step_send_by,
              updated_at, finished_at
), ev AS ({_INSERT_EVENTS}),
-- The row as it was before this write (every CTE reads the same snapshot).
prev AS (SELECT state, waiting_reason, app_order_id FROM checkouts WHERE id = %(id)s),
ch AS ({
    _append_change(
        "%(id)s",
        "%(state)s",
        "prev.",
        "upd, prev, jsonb_to_record(%(change)s::jsonb) AS c(kind text, detail jsonb)",
    )
})
SELECT * FROM upd
"""

_BATCH_ROW_COLUMNS = (
    "id uuid, lease_epoch bigint, state text, pending_step text, in_flight bool, step_no int, "
    "attempt int, start_step bool, lease_owner text, lease_s float8, send_s float8, "
    "due_in float8, "
    "recoveries int, event_seq int, violet_order_id bigint, sub_total bigint, "
    "shipping_total bigint, tax_total bigint, discount_total bigint, total bigint, bags jsonb, "
    "violet_status text, waiting_reason text, last_error jsonb, terminal bool, change jsonb"
)

# The same write for several checkouts in one statement (group commit, see group_commit.py).
# Rows are locked in id order first, so two batches (or a batch and a lease renewal) never
# deadlock; a row whose lease epoch moved on is simply not in `upd`, and neither are its events.
WRITE_MANY_SQL = f"""
WITH d AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS d({_BATCH_ROW_COLUMNS})
), locked AS (
    SELECT c.id, c.state, c.waiting_reason, c.app_order_id
    FROM checkouts c JOIN d ON c.id = d.id AND c.lease_epoch = d.lease_epoch
    ORDER BY c.id FOR UPDATE OF c
), upd AS (
    UPDATE checkouts c SET
        state = d.state,
        version = c.version + 1,
        pending_step = d.pending_step,
        in_flight = d.in_flight,
        step_no = d.step_no,
        attempt = d.attempt,
        step_started_at = CASE WHEN d.start_step THEN now() ELSE c.step_started_at END,
        step_send_by = CASE WHEN d.start_step THEN {_BATCH_SEND_BY} ELSE c.step_send_by END,
        lease_owner = d.lease_owner,
        lease_expires_at = CASE WHEN d.lease_owner IS NULL THEN NULL ELSE {_BATCH_LEASE_UNTIL} END,
        next_attempt_at = CASE
            WHEN d.lease_owner IS NOT NULL THEN {_BATCH_LEASE_UNTIL}
            WHEN d.due_in IS NULL THEN NULL
            ELSE now() + d.due_in * interval '1 second' END,
        recoveries = d.recoveries,
        event_seq = d.event_seq,
        violet_order_id = d.violet_order_id,
        sub_total = d.sub_total,
        shipping_total = d.shipping_total,
        tax_total = d.tax_total,
        discount_total = d.discount_total,
        total = d.total,
        bags = d.bags,
        violet_status = d.violet_status,
        waiting_reason = d.waiting_reason,
        last_error = d.last_error,
        updated_at = now(),
        finished_at = CASE WHEN d.terminal THEN now() END
    FROM d JOIN locked USING (id)
    WHERE c.id = d.id
    RETURNING c.id, c.version, c.next_attempt_at, c.lease_expires_at, c.step_started_at,
              c.step_send_by, c.updated_at, c.finished_at
), ev AS (
    INSERT INTO checkout_events (checkout_id, worker, {_EVENT_NAMES})
    SELECT e.checkout_id, e.worker, {_E_EVENT_NAMES}
    FROM jsonb_to_recordset(%(events)s::jsonb) AS e(checkout_id uuid, worker text, {_EVENT_COLUMNS})
    JOIN upd ON upd.id = e.checkout_id
), ch AS ({
    _append_change(
        "d.id",
        "d.state",
        "locked.",
        "d JOIN upd USING (id) JOIN locked USING (id), "
        "jsonb_to_record(d.change) AS c(kind text, detail jsonb)",
    )
})
SELECT * FROM upd
"""

_CLAIM_TEMPLATE = f"""
WITH {{cur}}, upd AS (
    UPDATE checkouts c SET
        lease_owner = %(worker)s,
        lease_expires_at = {LEASE_UNTIL},
        -- Left as it is (a claimed row is found again once its lease expired, whatever its
        -- due time), so a claim changes no indexed column and can be a HOT update (~7 fewer
        -- index entries per claimed row). A row that was never due gets the lease expiry.
        next_attempt_at = COALESCE(c.next_attempt_at, {LEASE_UNTIL}),
        lease_epoch = c.lease_epoch + 1,
        version = c.version + 1,
        recoveries = c.recoveries + CASE
            WHEN cur.prev_owner IS NOT NULL AND cur.prev_in_flight THEN 1 ELSE 0 END,
        event_seq = c.event_seq + CASE WHEN cur.prev_owner IS NOT NULL THEN 1 ELSE 0 END,
        updated_at = now()
    FROM cur
    WHERE c.id = cur.id
    RETURNING {", ".join("c." + name for name in ROW_COLUMNS.split(", "))}, cur.prev_owner,
              now() AS db_now
), ev AS (
    INSERT INTO checkout_events (checkout_id, seq, kind, from_state, to_state, step, worker, detail)
    SELECT id, event_seq, 'lease_taken_over', state, state, pending_step, %(worker)s,
           jsonb_build_object('previous_owner', prev_owner, 'in_flight', in_flight,
                              'recoveries', recoveries)
    FROM upd WHERE prev_owner IS NOT NULL
)
SELECT * FROM upd
"""

CLAIMABLE = (
    f"state NOT IN {states.TERMINAL_SQL} AND (lease_owner IS NULL OR lease_expires_at < now())"
)
_CLAIMABLE_C = (
    f"c.state NOT IN {states.TERMINAL_SQL} "
    "AND (c.lease_owner IS NULL OR c.lease_expires_at < now())"
)
_CUR = """cur AS (
    SELECT id, lease_owner AS prev_owner, in_flight AS prev_in_flight
    FROM checkouts
    WHERE {where}
    {order}
    FOR UPDATE {skip}
)"""
CLAIM_ONE_SQL = _CLAIM_TEMPLATE.format(
    cur=_CUR.format(where=f"id = %(id)s AND {CLAIMABLE}", order="", skip="NOWAIT")
)
CLAIM_DUE_SQL = _CLAIM_TEMPLATE.format(
    cur=_CUR.format(
        where=f"next_attempt_at <= now() AND {CLAIMABLE}",
        order="ORDER BY next_attempt_at LIMIT %(limit)s",
        skip="SKIP LOCKED",
    )
)

#: The merchants a checkout row's calls reach (a jsonb array): its bags', else those its request
#: names for its SKUs (engine/budgets.py `checkout_merchants` reads the same).
MERCHANTS_OF = (
    "coalesce(nullif(jsonb_path_query_array(bags, '$[*].merchant_id'), '[]'::jsonb), "
    "jsonb_path_query_array(request, '$.skus[*].merchant_id'))"
)

# The claim with per-merchant budgets: fair across merchants, and passing over closed budgets.
# The due rows come from `ix_checkouts_due` as in CLAIM_DUE_SQL, in a window (`window`, a few
# times the claim) from each end of the due rows: the oldest, and those due most recently. In it
# each merchant (each set of merchants) takes turns, its oldest first, so a merchant with 10,000
# due checkouts and one with 10 both get some of every claim. A row whose merchant's budget has
# no turn within `wait_s` is not claimed: it is made due when the budget next lets a call
# through, spread over half as long again, so it leaves the front of the index and the next
# claim's window holds other merchants' work. That puts it behind every row due before it: the
# recent end of the window is where it is found again, or a merchant whose budget closed once
# would wait for every other merchant's older backlog to be claimed (10 s of a 70 s drain with
# no call to the busiest merchant, docs/performance.md).
_DUE_END = f"""(
        SELECT id, next_attempt_at, coalesce({MERCHANTS_OF}, '[]')::text AS merchants
        FROM checkouts
        WHERE next_attempt_at <= now() AND {CLAIMABLE}
        ORDER BY next_attempt_at {{order}} LIMIT %(window)s
    )"""
_FAIR_CUR = f"""due AS (
    {_DUE_END.format(order="ASC")}
    UNION
    {_DUE_END.format(order="DESC")}
), opens AS MATERIALIZED (
    -- Each set of merchants in the window is judged once (a few dozen), not each due row. The
    -- sets are compared as text (jsonb's canonical form): hashing and sorting jsonb cost 13%
    -- of the claim.
    SELECT s.merchants, (
        SELECT max({budgets.OPENS_AT}) FROM violet_throttle t
        WHERE t.key IN (SELECT '{budgets.MERCHANT_PREFIX}' || m
                        FROM jsonb_array_elements_text(s.merchants::jsonb) AS m)
    ) AS opens_at
    FROM (SELECT DISTINCT merchants FROM due) AS s
), judged AS (
    -- `merchants` is never NULL (coalesced above), so the join keeps every due row.
    SELECT due.*, opens.opens_at FROM due JOIN opens USING (merchants)
), ready AS (
    SELECT id, next_attempt_at AS due_at,
           row_number() OVER (PARTITION BY merchants ORDER BY next_attempt_at) AS turn
    FROM judged WHERE opens_at IS NULL OR opens_at <= now() + %(wait_s)s * interval '1 second'
), cur AS (
    -- In turn order, so the lock can stop at the claim's size instead of reading every ready
    -- row, where the plan walks the ready rows in a nested loop (which keeps their order).
    SELECT c.id, c.lease_owner AS prev_owner, c.in_flight AS prev_in_flight
    FROM (SELECT id, turn, due_at FROM ready ORDER BY turn, due_at) AS r
    JOIN checkouts c ON c.id = r.id
    WHERE c.next_attempt_at <= now() AND {_CLAIMABLE_C}
    ORDER BY r.turn, r.due_at LIMIT %(limit)s
    FOR UPDATE OF c SKIP LOCKED
), closed AS (
    SELECT c.id, j.opens_at FROM checkouts c JOIN judged j ON j.id = c.id
    WHERE j.opens_at > now() + %(wait_s)s * interval '1 second'
      AND c.next_attempt_at <= now() AND {_CLAIMABLE_C}
    FOR UPDATE OF c SKIP LOCKED
), deferred AS (
    UPDATE checkouts c SET
        next_attempt_at = closed.opens_at + (closed.opens_at - now()) * (0.5 * random()),
        version = c.version + 1,
        updated_at = now()
    FROM closed WHERE c.id = closed.id
)"""
CLAIM_FAIR_SQL = _CLAIM_TEMPLATE.format(cur=_FAIR_CUR)


#: When the shared Violet budget for a key opens again, at most `cap` seconds from now; a block
#: that reaches further is shortened to that in the same statement.
THROTTLE_UNTIL_SQL = (
    "WITH blocked AS (SELECT blocked_until FROM violet_throttle "
    "  WHERE key = %(key)s AND blocked_until > now()), "
    "healed AS (UPDATE violet_throttle t SET "
    "  blocked_until = now() + %(cap)s * interval '1 second', updated_at = now() "
    "  FROM blocked WHERE t.key = %(key)s "
    "  AND blocked.blocked_until > now() + %(cap)s * interval '1 second') "
    "SELECT least(blocked_until, now() + %(cap)s * interval '1 second') AS blocked_until "
    "FROM blocked"
)

#: Close the shared Violet budget for a key for `s` seconds (never shortening a block).
THROTTLE_SQL = (
    "INSERT INTO violet_throttle (key, blocked_until) "
    "VALUES (%(key)s, now() + %(s)s * interval '1 second') "
    "ON CONFLICT (key) DO UPDATE SET blocked_until = "
    "greatest(violet_throttle.blocked_until, EXCLUDED.blocked_until), updated_at = now()"
)

# Rows locked in id order, as grouped step writes lock them: the two never deadlock.
RENEW_SQL = (
    "WITH mine AS (SELECT id FROM checkouts WHERE id = ANY(%(ids)s) "
    "AND lease_owner = %(worker)s ORDER BY id FOR UPDATE) "
    f"UPDATE checkouts c SET lease_expires_at = {LEASE_UNTIL} "
    "FROM mine WHERE c.id = mine.id RETURNING c.id"
)

# A checkout by one of its keys, with the database's time (see `CheckoutRow.local_db_now`).
_GET_BY = f"SELECT {ROW_COLUMNS}, now() AS db_now FROM checkouts WHERE {{key}} = %(ref)s"
GET_BY_ID_SQL = _GET_BY.format(key="id")
GET_BY_APP_ORDER_ID_SQL = _GET_BY.format(key="app_order_id")
GET_BY_VIOLET_ORDER_ID_SQL = _GET_BY.format(key="violet_order_id")

#: One checkout's audit trail, in order (the primary key `(checkout_id, seq)`).
EVENTS_SQL = "SELECT * FROM checkout_events WHERE checkout_id = %(id)s ORDER BY seq"

# -- a retry: where a failed checkout failed, and its reopen there (migration 0011) ---------------

#: A failed checkout's last transition into `failed`: the state it left and the step pending (the
#: primary key `(checkout_id, seq)` read backwards). `{id}` names the checkout.
_LAST_FAILURE = f"""
    SELECT e.from_state AS failed_from, e.step AS failed_step FROM checkout_events e
    WHERE e.checkout_id = {{id}} AND e.kind = 'transition' AND e.to_state = '{states.FAILED}'
    ORDER BY e.seq DESC LIMIT 1
"""
LAST_FAILURE_SQL = _LAST_FAILURE.format(id="%(id)s")

#: Failed checkouts newest first (`ix_checkouts_state_created_at`), each with where it failed;
#: `{where}` adds the filters (`checkout_reads.failed_with_failures`).
FAILED_WITH_FAILURES_SQL = f"""
SELECT {", ".join("c." + name for name in ROW_COLUMNS.split(", "))}, now() AS db_now,
       f.failed_from, f.failed_step
FROM checkouts c
LEFT JOIN LATERAL ({_LAST_FAILURE.format(id="c.id")}) f ON true
WHERE c.state = '{states.FAILED}'{{where}}
ORDER BY c.created_at DESC, c.id DESC
LIMIT %(limit)s
"""

#: Reopen a failed checkout where it failed, with its step in flight, no attempt made and no crash
#: counted: the failed step's reconcile reads Violet first. Taken only if the row is as it was read
#: (its version) and no live lease holds it; a new lease epoch fences any late writer, and the
#: caller takes the lease itself (`lease_owner`), or leaves the row due now for recovery. The
#: database's guard (0011) refuses any reopen elsewhere than where the audit trail says it failed.
REOPEN_SQL = f"""
WITH upd AS (
    UPDATE checkouts SET
        state = %(state)s,
        version = version + 1,
        pending_step = %(pending_step)s,
        in_flight = true,
        attempt = 0,
        recoveries = 0,
        lease_owner = %(lease_owner)s,
        lease_expires_at = CASE
            WHEN %(lease_owner)s::text IS NULL THEN NULL ELSE {LEASE_UNTIL} END,
        lease_epoch = lease_epoch + 1,
        next_attempt_at = CASE
            WHEN %(lease_owner)s::text IS NULL THEN now() ELSE {LEASE_UNTIL} END,
        event_seq = %(event_seq)s,
        last_error = NULL,
        updated_at = now(),
        finished_at = NULL
    WHERE id = %(id)s AND state = '{states.FAILED}' AND version = %(version)s
      AND (lease_owner IS NULL OR lease_expires_at < now())
    RETURNING {ROW_COLUMNS}, now() AS db_now
), ev AS ({_INSERT_EVENTS}),
ch AS (
    INSERT INTO checkout_changes (checkout_id, app_order_id, kind, detail)
    SELECT id, app_order_id, '{changes.CHECKOUT_REOPENED}', %(change)s::jsonb FROM upd
)
SELECT * FROM upd
"""
