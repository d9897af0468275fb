"""Bytes per audit event and per webhook event before and after `orchestrator prune`.

A realistic trail: checkouts driven through the sandbox (physical card, digital token, a
declined card, two merchants), then for each submitted order's bags the merchant ships and
delivers, each move's Order arriving as a webhook event that the applier records. Then every
row is made older than the window (the owner, with triggers off for that one statement) and the
tables rewritten compact, pruned (which vacuums), and the same number of checkouts is driven
again: how much the tables grow then, against the first run, says whether the freed space is
reused. Also measured: the server time of inserting events with the prunable index and without,
and building that index on the same data (`REINDEX`), per million events.

    uv run python -m bench.retention [--quick]

Sizes are PostgreSQL's own (`pg_column_size` of each row and column, `pg_total_relation_size`
of the tables with their indexes and TOAST); the figures that matter are the ratios after/before.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import psycopg

from bench.common import admin_dsn, bench_settings, machine_info, median, ratio, save_results
from bench.common import scratch_database as scratch
from orchestrator.api import Orchestrator
from orchestrator.retention import prune
from orchestrator.sandbox import SandboxControl, asgi_transport, create_app
from orchestrator.sandbox.examples import (
    DECLINED,
    DIGITAL,
    TOKEN,
    TWO_MERCHANTS,
    VISA,
    example_request,
)
from orchestrator.store import inbox
from orchestrator.webhooks.apply import WebhookApplier, applier_pool

KINDS = (
    {"payment": VISA},
    {"skus": DIGITAL, "payment": TOKEN},
    {"payment": DECLINED},
    {"skus": TWO_MERCHANTS, "payment": VISA},
)

_EVENT_SIZES = """
SELECT count(*) AS rows, coalesce(sum(pg_column_size(e.*)), 0) AS row_bytes,
       coalesce(sum(pg_column_size(request_body)), 0) AS request_bytes,
       coalesce(sum(pg_column_size(response_body)), 0) AS response_bytes,
       coalesce(sum(pg_column_size(detail)), 0) AS detail_bytes
FROM checkout_events e
"""
_CALL_SIZES = """
SELECT count(*) AS rows, coalesce(sum(pg_column_size(e.*)), 0) AS row_bytes
FROM checkout_events e WHERE kind = 'violet_call'
"""
_INBOX_SIZES = """
SELECT count(*) AS rows, coalesce(sum(pg_column_size(w.*)), 0) AS row_bytes,
       coalesce(sum(pg_column_size(body)), 0) AS body_bytes
FROM webhook_inbox w
"""
_CHANGES_SIZES = """
SELECT count(*) AS rows, coalesce(sum(pg_column_size(c.*)), 0) AS row_bytes
FROM checkout_changes c
"""
_TOTALS = """
SELECT pg_total_relation_size('checkout_events') AS events_total,
       pg_relation_size('checkout_events') AS events_heap,
       pg_total_relation_size('webhook_inbox') AS inbox_total
"""


def _row(conn: psycopg.Connection[Any], sql: str) -> dict[str, Any]:
    cur = conn.execute(sql)
    names = [d.name for d in cur.description or ()]
    values = cur.fetchone() or ()
    return {n: int(v) for n, v in zip(names, values, strict=True)}


def sizes(dbname: str) -> dict[str, Any]:
    with psycopg.connect(admin_dsn(dbname), autocommit=True) as conn:
        events = _row(conn, _EVENT_SIZES)
        calls = _row(conn, _CALL_SIZES)
        webhooks = _row(conn, _INBOX_SIZES)
        changes = _row(conn, _CHANGES_SIZES)
        totals = _row(conn, _TOTALS)
        totals["checkouts"] = _row(conn, "SELECT count(*) AS n FROM checkouts")["n"]
    return {"events": events, "calls": calls, "inbox": webhooks, "changes": changes, **totals}


async def drive(url: str, n: int, app: Any) -> None:
    """`n` checkouts; each submitted order's bags shipped and delivered, the webhooks applied."""
    transport = asgi_transport(app)
    settings = bench_settings(url, "http://sandbox/v1")
    async with (
        Orchestrator(settings, violet_transport=transport) as orch,
        SandboxControl(transport=transport) as control,
    ):
        conn = await psycopg.AsyncConnection.connect(admin_dsn(url.rsplit("/", 1)[1]))
        await conn.set_autocommit(True)
        async with conn:
            for i in range(n):
                request = example_request(
                    app_order_id=f"ret-{uuid.uuid4().hex[:12]}", **KINDS[i % len(KINDS)]
                )
                checkout = await orch.start(request)
                if checkout.state != "submitted" or checkout.violet_order_id is None:
                    continue
                for bag in checkout.bags:
                    for action, topic in (
                        ("ship", "ORDER_SHIPPED"),
                        ("deliver", "ORDER_DELIVERED"),
                    ):
                        order = await control.move_bag(
                            checkout.violet_order_id, int(bag["bag_id"]), action
                        )
                        event = inbox.InboxEvent(
                            f"evt-{uuid.uuid4().hex}",
                            topic,
                            order,
                            violet_order_id=checkout.violet_order_id,
                            bag_id=int(bag["bag_id"]),
                        )
                        await inbox.insert(conn, event)
    async with applier_pool(url) as pool:
        await WebhookApplier(pool).run_until_idle(batch=100)


def age_everything(dbname: str, days: int) -> None:
    """Every row `days` older, as the owner with the triggers off for this session; then the
    tables rewritten compact (VACUUM FULL), as a trail written `days` ago would be."""
    with psycopg.connect(admin_dsn(dbname), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(f"UPDATE checkout_events SET at = at - interval '{days} days'")
        conn.execute(f"UPDATE webhook_inbox SET received_at = received_at - interval '{days} days'")
        conn.execute("RESET session_replication_role")
        conn.execute("VACUUM (FULL, ANALYZE) checkout_events, webhook_inbox")


def vacuum(dbname: str) -> None:
    with psycopg.connect(admin_dsn(dbname), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) checkout_events, webhook_inbox")


def index_build_seconds(dbname: str) -> float:
    """Rebuild ix_checkout_events_prunable on unpruned events (what the migration costs)."""
    with psycopg.connect(admin_dsn(dbname), autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("REINDEX INDEX ix_checkout_events_prunable")
        return time.perf_counter() - started


_COPY_EVENTS = """
INSERT INTO checkout_events (checkout_id, seq, at, kind, from_state, to_state, step, attempt,
    worker, http_method, http_path, http_status, latency_ms, request_body, response_body,
    error_class, error_type, error_message, detail)
SELECT gen_random_uuid(), seq, now(), kind, from_state, to_state, step, attempt, worker,
    http_method, http_path, http_status, latency_ms, request_body, response_body, error_class,
    error_type, error_message, detail
FROM (SELECT * FROM checkout_events WHERE NOT detail ? 'pruned_at' OR detail IS NULL
      ORDER BY checkout_id, seq LIMIT %(n)s) AS sample
"""


def insert_cost(dbname: str, rows: int, repeats: int) -> dict[str, Any]:
    """Server time of inserting `rows` copies of the trail's own events (every trigger runs),
    with the prunable index and without it, interleaved; each insert rolled back."""
    timings: dict[str, list[float]] = {"with_index": [], "without_index": []}
    with psycopg.connect(admin_dsn(dbname)) as conn:
        for _ in range(repeats):
            for label in ("with_index", "without_index"):
                with conn.transaction(force_rollback=True):
                    if label == "without_index":
                        conn.execute("DROP INDEX ix_checkout_events_prunable")
                    started = time.perf_counter()
                    conn.execute(_COPY_EVENTS, {"n": rows})
                    timings[label].append(time.perf_counter() - started)
        conn.rollback()
    per_row = {k: round(median(v) / rows * 1e6, 2) for k, v in timings.items()}
    return {
        "rows": rows,
        "us_per_row": per_row,
        "ratio_with_vs_without": round(ratio(per_row["with_index"], per_row["without_index"]), 3),
    }


def per(total: int, rows: int) -> float:
    return round(total / rows, 1) if rows else float("nan")


def report(label: str, measured: dict[str, Any]) -> dict[str, Any]:
    events, webhooks = measured["events"], measured["inbox"]
    line = {
        "events": events["rows"],
        "bytes_per_event": per(events["row_bytes"], events["rows"]),
        "bytes_per_violet_call": per(measured["calls"]["row_bytes"], measured["calls"]["rows"]),
        "body_bytes_per_event": per(
            events["request_bytes"] + events["response_bytes"], events["rows"]
        ),
        "detail_bytes_per_event": per(events["detail_bytes"], events["rows"]),
        "webhook_events": webhooks["rows"],
        "bytes_per_webhook_event": per(webhooks["row_bytes"], webhooks["rows"]),
        "bytes_per_checkout": per(
            events["row_bytes"] + webhooks["row_bytes"] + measured["changes"]["row_bytes"],
            measured["checkouts"],
        ),
        "changes": measured["changes"]["rows"],
        "bytes_per_change": per(measured["changes"]["row_bytes"], measured["changes"]["rows"]),
        "events_total_bytes": measured["events_total"],
        "events_heap_bytes": measured["events_heap"],
        "inbox_total_bytes": measured["inbox_total"],
    }
    print(f"{label:<34}", "  ".join(f"{k}={v}" for k, v in line.items()))
    return line


async def main(quick: bool) -> None:
    n = 200 if quick else 2000
    results: dict[str, Any] = {"machine": machine_info(), "checkouts": n}
    app = create_app()  # one sandbox for both runs: its cart ids go on
    with scratch("bench_ret") as (dbname, url):
        await drive(url, n, app)
        age_everything(dbname, 100)
        before = report("before prune", sizes(dbname))
        build_s = index_build_seconds(dbname)
        started = time.perf_counter()
        pruned = await prune(url, older_than_days=90, batch=1000)
        prune_s = time.perf_counter() - started
        after = report("after prune (it vacuums)", sizes(dbname))
        await drive(url, n, app)
        vacuum(dbname)
        again = report("same again, new checkouts", sizes(dbname))
        inserts = insert_cost(dbname, before["events"], 3 if quick else 7)
        print("insert cost (server, us per event):", inserts)
    results.update(
        before=before,
        after_prune=after,
        after_second_run=again,
        prune=pruned.to_json(),
        insert_cost=inserts,
        prune_seconds=round(prune_s, 3),
        prune_events_per_s=round(pruned.events.rows / prune_s) if prune_s else None,
        index_build_s_per_million_events=round(build_s / before["events"] * 1e6, 2),
        ratios={
            "bytes_per_violet_call_after_vs_before": round(
                ratio(after["bytes_per_violet_call"], before["bytes_per_violet_call"]), 3
            ),
            "bytes_per_event_after_vs_before": round(
                ratio(after["bytes_per_event"], before["bytes_per_event"]), 3
            ),
            "bytes_per_webhook_event_after_vs_before": round(
                ratio(after["bytes_per_webhook_event"], before["bytes_per_webhook_event"]), 3
            ),
            "events_table_growth_second_run_vs_first": round(
                ratio(
                    again["events_total_bytes"] - after["events_total_bytes"],
                    before["events_total_bytes"],
                ),
                3,
            ),
        },
    )
    print("ratios:", results["ratios"])
    print(
        f"prune: {pruned.events.rows} events, {pruned.inbox.rows} webhook events in "
        f"{prune_s:.2f} s; index build {results['index_build_s_per_million_events']} s per "
        "million events"
    )
    save_results("retention", quick, results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
