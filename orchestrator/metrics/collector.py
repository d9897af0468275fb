"""The metrics themselves: this process's counters, and the database's gauges read per scrape.

`ProcessMetrics` is the sink of `orchestrator.observe` (Violet calls, reconcile verdicts,
takeovers, webhook answers); one per process, installed by `process_metrics()` the first time
metrics are served.
`scrape(source)` reads the database's gauges with the one `stats` statement (store/stats.py),
and renders them with the process's metrics in Prometheus' text format. A database that cannot
be read does not fail the scrape: `orchestrator_database_up` says 0 and its gauges are left out,
so an alert can tell "the database is down" from "nothing is happening".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from orchestrator import observe, states
from orchestrator.store import stats
from orchestrator.store.budgets import Budget, MerchantBudgets
from orchestrator.store.query_runner import QueryRunner, as_runner

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["CONTENT_TYPE", "ProcessMetrics", "process_metrics", "render", "scrape"]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
#: Violet answers in tens of milliseconds to seconds; a call is cut at the total timeout (60 s).
_CALL_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

log = logging.getLogger("orchestrator.metrics")


class ProcessMetrics:
    """What this process did since it started: the `observe` sink."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls = Counter(
            "orchestrator_violet_calls",
            "Exchanges with Violet, by path template, method and HTTP status (or the error that "
            "left the exchange unanswered).",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.call_seconds = Histogram(
            "orchestrator_violet_call_seconds",
            "Latency of one exchange with Violet, by path template and method.",
            ["endpoint", "method"],
            buckets=_CALL_BUCKETS,
            registry=r,
        )
        self.verdicts = Counter(
            "orchestrator_reconcile_verdicts",
            "What reconciling a step found in flight decided (advance, redo, defer, pending, "
            "park, fail; unreadable when Violet could not be read).",
            ["verdict"],
            registry=r,
        )
        self.takeovers = Counter(
            "orchestrator_lease_takeovers",
            "Leases taken over from a worker whose lease had expired (a crash or a stall).",
            ["of"],
            registry=r,
        )
        self.webhooks = Counter(
            "orchestrator_webhook_answers",
            "Webhook deliveries answered by this process's receiver, by outcome (stored and "
            "duplicate are accepted; unsigned, too_large and bad_request are refused).",
            ["outcome"],
            registry=r,
        )

    def violet_call(self, endpoint: str, method: str, status: str, seconds: float) -> None:
        self.calls.labels(endpoint, method, status).inc()
        self.call_seconds.labels(endpoint, method).observe(seconds)

    def reconcile_verdict(self, verdict: str) -> None:
        self.verdicts.labels(verdict).inc()

    def takeover(self, of: str) -> None:
        self.takeovers.labels(of).inc()

    def webhook_answer(self, outcome: str) -> None:
        self.webhooks.labels(outcome).inc()


_process: ProcessMetrics | None = None


def process_metrics() -> ProcessMetrics:
    """This process's metrics, counting from the first call on (installs the `observe` sink)."""
    global _process
    if _process is None:
        _process = ProcessMetrics()
        observe.install(_process)
    return _process


@dataclass(frozen=True, slots=True)
class _Read:
    snapshot: stats.Snapshot | None
    seconds: float
    budgets: tuple[Budget, ...] = ()


def _age(at: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else max(0.0, (at - since).total_seconds())


class _DatabaseGauges(Collector):
    """The gauges of one read of the database (or only `database_up 0` when it failed)."""

    def __init__(self, read: _Read) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        snap = self.read.snapshot
        yield GaugeMetricFamily(
            "orchestrator_database_up",
            "1 when this scrape read the database's gauges, 0 when it could not.",
            value=0 if snap is None else 1,
        )
        if snap is None:
            return
        yield GaugeMetricFamily(
            "orchestrator_stats_read_seconds",
            "How long this scrape's one statement over the database took, round trip included.",
            value=self.read.seconds,
        )
        by_state = GaugeMetricFamily(
            "orchestrator_checkouts",
            "Checkouts per state; finished states of a large table are the planner's estimate "
            "(see orchestrator_checkouts_estimated).",
            labels=["state"],
        )
        estimated = GaugeMetricFamily(
            "orchestrator_checkouts_estimated",
            "1 for a state whose count is the planner's estimate, 0 for an exact count.",
            labels=["state"],
        )
        for state in states.STATES:
            by_state.add_metric([state], snap.by_state[state])
            estimated.add_metric([state], 1 if state in snap.estimated else 0)
        yield by_state
        yield estimated
        yield from _simple(
            ("checkouts_due", "Open checkouts the recovery job would claim now.", snap.due_now),
            (
                "checkouts_waiting_for_input",
                "Checkouts waiting for the customer or the host (payment, 3-D Secure).",
                snap.waiting_for_input,
            ),
            ("checkouts_leased", "Checkouts a live worker holds right now.", snap.leased),
            (
                "steps_unknown_outcome",
                "Open checkouts whose step was started and whose outcome is not recorded yet "
                "(its Violet call may be running, or its worker died: recovery reconciles it).",
                snap.in_flight,
            ),
            (
                "oldest_open_checkout_age_seconds",
                "Age of the oldest checkout that is not finished (0 when none is open).",
                _age(snap.at, snap.oldest.created_at if snap.oldest else None),
            ),
            (
                "violet_throttle_active_pauses",
                "Keys (the app, merchants) Violet's 429 answers hold back right now.",
                snap.throttled_keys,
            ),
            (
                "violet_throttle_remaining_seconds",
                "Seconds until the last of Violet's 429 pauses ends (0 when none holds).",
                _age(snap.throttled_until, snap.at) if snap.throttled_until else 0.0,
            ),
            (
                "webhook_inbox_pending",
                "Stored webhook events not applied yet.",
                snap.inbox_pending,
            ),
            (
                "webhook_inbox_oldest_pending_age_seconds",
                "Age of the oldest webhook event not applied yet (0 when none waits).",
                _age(snap.at, snap.inbox_oldest_pending),
            ),
            (
                "webhook_inbox_failed",
                "Stored webhook events the applier gave up on.",
                snap.inbox_failed,
            ),
        )
        yield from _budgets(self.read.budgets)


def _budgets(budgets: tuple[Budget, ...]) -> Iterator[Metric]:
    """Each Violet rate budget (`global`, `merchant:<id>`): open, its pace, calls and 429s."""
    open_ = GaugeMetricFamily(
        "orchestrator_violet_budget_open",
        "1 when the budget lets a call through now, 0 while it holds calls back.",
        labels=["key"],
    )
    rate = GaugeMetricFamily(
        "orchestrator_violet_budget_rate_per_second",
        "Calls a second the fleet allows itself for this key (learned from 429s; absent: not "
        "paced yet).",
        labels=["key"],
    )
    calls = CounterMetricFamily(
        "orchestrator_violet_budget_calls",
        "Calls this budget let through, every process together (stored in the database).",
        labels=["key"],
    )
    limited = CounterMetricFamily(
        "orchestrator_violet_budget_rate_limited",
        "Violet's 429 answers charged to this budget, every process together.",
        labels=["key"],
    )
    for budget in budgets:
        open_.add_metric([budget.key], 1 if budget.open else 0)
        if budget.rate_per_s is not None:
            rate.add_metric([budget.key], budget.rate_per_s)
        calls.add_metric([budget.key], budget.calls)
        limited.add_metric([budget.key], budget.rate_limited)
    yield from (open_, rate, calls, limited)


def _simple(*gauges: tuple[str, str, float]) -> Iterator[Metric]:
    for name, doc, value in gauges:
        yield GaugeMetricFamily(f"orchestrator_{name}", doc, value=value)


class _Forward(Collector):
    """Another registry's metrics, collected as part of this one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


def render(
    snapshot: stats.Snapshot | None, seconds: float = 0.0, budgets: tuple[Budget, ...] = ()
) -> bytes:
    """The text exposition of the database's gauges (`snapshot`, None: unreadable), the rate
    budgets and this process's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_DatabaseGauges(_Read(snapshot, seconds, budgets)))
    registry.register(_Forward(process_metrics().registry))
    return generate_latest(registry)


async def scrape(source: AsyncEngine | QueryRunner) -> bytes:
    """Read the database's gauges now (one statement) and render every metric."""
    started = time.perf_counter()
    snapshot: stats.Snapshot | None
    budgets: tuple[Budget, ...] = ()
    try:
        runner = as_runner(source)
        snapshot = await stats.read(runner)
        budgets = tuple(await MerchantBudgets(runner).all())
    except Exception as exc:  # a scrape reports the database as down rather than failing
        if not _from_database(exc):
            raise
        from orchestrator.store.database import error_reason

        log.warning("metrics: the database's gauges are unreadable: %s", error_reason(exc))
        snapshot = None
    return render(snapshot, time.perf_counter() - started, budgets)


def _from_database(exc: BaseException) -> bool:
    """The database failed or refused the statement (down, a timeout, a schema it lacks)."""
    import psycopg

    from orchestrator.errors import DatabaseUnavailable

    if isinstance(exc, psycopg.Error | OSError | DatabaseUnavailable):
        return True
    import sqlalchemy.exc

    return isinstance(exc, sqlalchemy.exc.DBAPIError)
