"""Per-merchant rate budgets over real PostgreSQL and the sandbox over HTTP: a 429 is no
failure, one merchant's closed budget holds back no other, the budget is shared through the
database, turns are paced at the learned rate, and claims take turns across merchants."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from orchestrator.api import Orchestrator
from orchestrator.config import Settings
from orchestrator.engine.budgets import MerchantPacer
from orchestrator.recovery import RecoveryJob
from orchestrator.sandbox.catalog import shelf_sku
from orchestrator.store import checkout_sql
from orchestrator.store.budgets import MerchantBudgets, merchant_key
from orchestrator.violet import ops
from orchestrator.violet.errors import VioletBudgetClosed
from orchestrator.violet.ops import Op
from tests.fixtures.orchestrator import TOKEN, checkout_request, make_settings
from tests.fixtures.sandbox import HttpSandbox

SHOP_A, SHOP_B = 20001, 20002


def shop_request(merchant_id: int, *, hinted: bool = True) -> dict[str, Any]:
    line: dict[str, Any] = {"sku_id": shelf_sku(merchant_id), "quantity": 1}
    if hinted:
        line["merchant_id"] = merchant_id
    return checkout_request(skus=[line], payment=TOKEN)


def http_settings(database_url: str, http_sandbox: HttpSandbox, **overrides: Any) -> Settings:
    return make_settings(database_url, http_sandbox.base_url, **overrides)


@pytest.fixture
async def orch(database_url: str, http_sandbox: HttpSandbox) -> AsyncIterator[Orchestrator]:
    settings = http_settings(database_url, http_sandbox, max_attempts=2)
    async with Orchestrator(settings) as orchestrator:
        yield orchestrator


async def _scalar(orch: Orchestrator, sql: str, params: dict[str, Any] | None = None) -> Any:
    rows = await orch.repo.rows(sql, params)
    return next(iter(rows[0].values())) if rows else None


async def test_a_429_storm_fails_no_checkout_and_uses_none_of_its_attempts(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    """Five 429s in a row on two steps, with two attempts allowed per step: the checkout is
    submitted all the same, every 429 recorded as a retry that counted no attempt."""
    control = http_sandbox.control
    await control.add_fault("customer", "rate_limit", count=5, retry_after="0.05")
    await control.add_fault("price", "rate_limit", count=5, retry_after="0.05")
    first = await orch.start(shop_request(SHOP_A))
    assert first.state not in ("failed", "submitted")
    await RecoveryJob(orch.worker).run("until-idle", poll=0.05)
    done = await orch.get(first.app_order_id)
    assert done.state == "submitted", done.last_error
    retries = [e for e in await orch.history(first.app_order_id) if e.kind == "retry_scheduled"]
    assert len(retries) == 10
    assert all((e.detail or {}).get("attempt_counted") is False for e in retries)
    stats = await control.stats()
    assert stats["calls_by_op"]["customer"] == 6 and stats["calls_by_op"]["price"] == 6
    budgets = {b.key: b for b in await MerchantBudgets(orch.repo).all()}
    assert budgets[merchant_key(SHOP_A)].rate_limited == 10
    assert budgets[merchant_key(SHOP_A)].rate_per_s is not None  # paced from now on
    # The 429s were the merchant's: the global throttle stayed open.
    assert await orch.repo.throttle_until("global", cap=300) is None


async def test_a_closed_merchant_holds_back_no_other(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    await MerchantBudgets(orch.repo).rate_limited([merchant_key(SHOP_A)], 120.0)
    a_ids = [(await orch.start(shop_request(SHOP_A), run=False)).app_order_id for _ in range(3)]
    b_ids = [(await orch.start(shop_request(SHOP_B), run=False)).app_order_id for _ in range(3)]
    summary = await RecoveryJob(orch.worker).run("until-idle", poll=0.05)
    assert summary.submitted == 3
    assert [(await orch.get(i)).state for i in b_ids] == ["submitted"] * 3
    for app_order_id in a_ids:
        waiting = await orch.get(app_order_id)
        assert (waiting.state, waiting.attempt) == ("new", 0)
        assert waiting.next_attempt_at is not None
        assert (waiting.next_attempt_at - datetime.now(UTC)).total_seconds() > 60
    assert (await http_sandbox.control.stats())["calls_by_op"]["create_cart"] == 3


async def test_a_step_with_no_turn_is_deferred_before_its_intent(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    """The turn of a step's first call is taken before its intent is written: a budget with
    no turn within the wait defers the checkout with one write, and the trail shows the wait
    alone, no step started and given back."""
    registered = await orch.start(shop_request(SHOP_A), run=False)
    await MerchantBudgets(orch.repo).rate_limited([merchant_key(SHOP_A)], 60.0)
    deferred = await orch.run(registered.app_order_id)
    assert (deferred.state, deferred.attempt, deferred.in_flight) == ("new", 0, False)
    history = await orch.history(deferred.app_order_id)
    assert [e.kind for e in history] == ["created", "retry_scheduled"]
    wait = history[-1].detail
    assert wait is not None
    assert (wait["attempt_counted"], wait["reconcile_first"]) == (False, False)
    assert wait["budget_wait_s"] > 30
    assert history[-1].attempt == 1  # the attempt it was about to make
    assert "create_cart" not in (await http_sandbox.control.stats())["calls_by_op"]


async def test_each_platform_call_takes_one_turn_reserved_or_not(
    orch: Orchestrator, http_sandbox: HttpSandbox
) -> None:
    """A step's first turn may be taken before its intent (reserved) and spent by its first
    platform call: every platform call of a whole checkout still takes exactly one turn, and
    reads of Violet's own record (a resumed submit's cart read) take none."""
    key = merchant_key(SHOP_A)
    budgets = MerchantBudgets(orch.repo)
    await budgets.rate_limited([key], 0.01)  # paced (100 calls/s): every turn is counted
    await asyncio.sleep(0.05)
    registered = await orch.start(shop_request(SHOP_A), run=False)
    await http_sandbox.control.add_fault("submit", "error", count=1, status=503)
    resting = await orch.run(registered.app_order_id)  # every step up to a failed submit
    assert (resting.pending_step, resting.in_flight) == ("submit", False), resting
    done = await orch.run(registered.app_order_id, actor="ops")  # resumed: reads, then submits
    assert done.state == "submitted", done.last_error
    (budget,) = [b for b in await budgets.all() if b.key == key]
    calls = (await http_sandbox.control.stats())["calls_by_op"]
    platform = {op.name for op in vars(ops).values() if isinstance(op, ops.Op) and op.platform}
    assert calls.get("get_cart", 0) >= 1
    assert budget.calls == sum(n for op, n in calls.items() if op in platform), (budget, calls)


async def test_a_step_refused_its_turn_after_only_reads_starts_afresh(
    orch: Orchestrator, http_sandbox: HttpSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed submit reads the cart, then its submit finds the merchant's budget closed:
    nothing that could apply it left, so the checkout is at rest, no attempt used, and the next
    drive submits at once instead of reading the cart back and waiting out the settle window."""
    await http_sandbox.control.add_fault("submit", "error", count=1, status=503)
    first = await orch.start(shop_request(SHOP_A))
    assert (first.pending_step, first.in_flight) == ("submit", False), first
    admit = MerchantPacer.admit
    refused: list[str] = []

    async def busy_once(self: MerchantPacer, op: Op) -> None:
        if op.name == "submit" and not refused:
            refused.append(op.name)
            raise VioletBudgetClosed("not sent: busy", wait=0.05, method=op.method, op=op.name)
        await admit(self, op)

    monkeypatch.setattr(MerchantPacer, "admit", busy_once)
    await RecoveryJob(orch.worker).run("until-idle", poll=0.05)
    done = await orch.get(first.app_order_id)
    assert done.state == "submitted", done.last_error
    assert refused == ["submit"]
    history = await orch.history(first.app_order_id)
    deferral = next(
        i for i, e in enumerate(history) if (e.detail or {}).get("budget_wait_s") is not None
    )
    assert history[deferral].detail is not None
    assert history[deferral].detail["attempt_counted"] is False
    after = [e.kind for e in history[deferral:]]
    assert "reconciled" not in after, after
    # Two drives after the 503, each reading the cart before its submit: no read-back besides.
    calls = (await http_sandbox.control.stats())["calls_by_op"]
    assert (calls["submit"], calls["get_cart"]) == (2, 2), calls


async def test_two_processes_share_a_merchant_budget_through_the_database(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    """One process is answered 429 (Retry-After 60 s); the other, on its own pool, then sends
    nothing to that merchant: its checkout is deferred, no attempt used. Another merchant's goes."""
    settings = http_settings(database_url, http_sandbox)
    async with Orchestrator(settings) as one, Orchestrator(settings) as two:
        await http_sandbox.control.add_fault("create_cart", "rate_limit", count=1, retry_after=60)
        answered = await one.start(shop_request(SHOP_A))
        assert answered.state == "new" and answered.attempt == 0
        deferred = await two.start(shop_request(SHOP_A))
        assert (deferred.state, deferred.attempt, deferred.in_flight) == ("new", 0, False)
        assert deferred.next_attempt_at is not None
        assert (deferred.next_attempt_at - datetime.now(UTC)).total_seconds() > 30
        other = await two.start(shop_request(SHOP_B))
        assert other.state == "submitted"
        # One create_cart for A (answered 429) and one for B: the deferred one was never sent.
        assert (await http_sandbox.control.stats())["calls_by_op"]["create_cart"] == 2
        history = await two.history(deferred.app_order_id)
        wait = [e for e in history if e.kind == "retry_scheduled"][-1]
        assert wait.detail is not None and wait.detail["attempt_counted"] is False
        assert wait.detail["budget_wait_s"] > 30


async def test_turns_are_handed_out_at_the_learned_rate(orch: Orchestrator) -> None:
    budgets = MerchantBudgets(orch.repo)
    key = merchant_key(SHOP_A)
    assert await budgets.take([key], max_wait=1.0) == 0.0  # unpaced until its first 429
    await budgets.rate_limited([key], 0.5)
    (budget,) = [b for b in await budgets.all() if b.key == key]
    assert budget.rate_per_s is not None and not budget.open
    rate = budget.rate_per_s
    waits = [await budgets.take([key], max_wait=100.0) for _ in range(4)]
    # Each turn comes one interval after the one before (within the time the statements took).
    gaps = [later - earlier for earlier, later in itertools.pairwise(waits)]
    assert waits[0] >= 0.4
    assert all(abs(gap - 1 / rate) < 0.2 / rate + 0.05 for gap in gaps), (rate, waits)
    # A turn further than the caller may wait reserves nothing.
    far = await budgets.take([key], max_wait=0.01)
    assert far > 0.01
    assert await budgets.take([key], max_wait=0.01) == pytest.approx(far, abs=0.05)


async def test_a_multi_merchant_call_waits_for_its_busiest_merchant(orch: Orchestrator) -> None:
    budgets = MerchantBudgets(orch.repo)
    await budgets.rate_limited([merchant_key(SHOP_A)], 30.0)
    wait = await budgets.take([merchant_key(SHOP_B), merchant_key(SHOP_A)], max_wait=1.0)
    assert wait > 20  # A's block; B alone would go now
    assert await budgets.take([merchant_key(SHOP_B)], max_wait=1.0) == 0.0


async def test_429s_within_the_budget_wait_of_a_cut_cut_no_further(orch: Orchestrator) -> None:
    """Turns are handed out up to the budget wait ahead: the 429s of calls given turns before a
    cut arrive within it, and are the same round, so they cut the pace once, not once each."""
    budgets = MerchantBudgets(orch.repo)
    held, free = merchant_key(SHOP_A), merchant_key(SHOP_B)
    for key in (held, free):
        await budgets.rate_limited([key], 0.05)  # the first 429 sets the pace: 1 / 0.05 = 20/s
    await asyncio.sleep(1.2)  # past the wait, 10 calls at 20/s and the Retry-After: a new round
    await budgets.rate_limited([free], 0.05, hold_s=0.0)
    await budgets.rate_limited([held], 0.05, hold_s=1.0)
    await asyncio.sleep(0.8)
    await budgets.rate_limited([free], 0.05, hold_s=0.0)  # past 10 calls at 17/s: cut again
    await budgets.rate_limited([held], 0.05, hold_s=1.0)  # within the wait: the same round
    rates = {b.key: b.rate_per_s for b in await budgets.all()}
    assert rates[free] == pytest.approx(20 * 0.85 * 0.85)
    assert rates[held] == pytest.approx(20 * 0.85)


async def test_the_first_429_paces_from_the_recent_rate_not_the_average_since_the_start(
    orch: Orchestrator,
) -> None:
    """A merchant with a small share of the work at first, then all of it: the 429 comes from
    the recent calls, so the first pace is set from them (migration 0018), not from the slow
    start's average, which would take many calls to grow back from."""
    budgets = MerchantBudgets(orch.repo)
    key = merchant_key(SHOP_A)
    started = time.monotonic()
    await budgets.take([key], max_wait=0.05)  # windows of 4 waits: 0.2 s
    await asyncio.sleep(1.2)
    await budgets.take([key], max_wait=0.05)  # a full window ends: 2 calls in 1.2 s
    for _ in range(30):
        await budgets.take([key], max_wait=0.05)
    await asyncio.sleep(0.12)  # the current window is half as long as a full one
    await budgets.rate_limited([key], 0.05, hold_s=0.05)
    since_start = 32 / (time.monotonic() - started)
    (budget,) = [b for b in await budgets.all() if b.key == key]
    assert budget.rate_per_s is not None
    assert budget.rate_per_s > 3 * 0.85 * since_start, (budget.rate_per_s, since_start)


async def _due_checkouts(orch: Orchestrator, merchant_id: int, n: int) -> list[str]:
    ids = [(await orch.start(shop_request(merchant_id), run=False)).app_order_id for _ in range(n)]
    # The busy merchant's checkouts became due first, so the oldest-first claim takes them first.
    await orch.repo.rows(
        "UPDATE checkouts SET next_attempt_at = now() - interval '1 hour' + "
        "(SELECT count(*) FROM checkouts) * interval '1 ms' WHERE app_order_id = ANY(%(ids)s)",
        {"ids": ids},
    )
    return ids


async def test_a_claim_takes_turns_across_merchants(orch: Orchestrator) -> None:
    busy = await _due_checkouts(orch, SHOP_A, 30)
    small = await _due_checkouts(orch, SHOP_B, 3)
    oldest_first = await orch.repo.rows(
        "SELECT app_order_id FROM checkouts WHERE next_attempt_at <= now() "
        "ORDER BY next_attempt_at LIMIT 6"
    )
    assert {r["app_order_id"] for r in oldest_first} <= set(busy)  # the unfair order
    claims = await orch.repo.claim_due(
        worker="w", limit=6, lease_seconds=30, budget_wait=orch.settings.merchant_budget_wait
    )
    claimed = [c.row.app_order_id for c in claims]
    assert len(claimed) == 6
    assert set(small) <= set(claimed)  # each of B's due checkouts got a turn
    assert len(set(claimed) & set(busy)) == 3


async def test_a_merchant_due_behind_a_whole_window_of_older_work_gets_turns(
    orch: Orchestrator,
) -> None:
    """A merchant whose checkouts were deferred (its budget closed) is due again behind every
    other merchant's older backlog: the claim's window reaches the recent end of the due rows
    too, so it gets turns before that backlog is all claimed."""
    backlog = await _due_checkouts(orch, SHOP_B, 70)  # more than the window of 64
    deferred = await _due_checkouts(orch, SHOP_A, 3)  # due most recently
    claims = await orch.repo.claim_due(worker="w", limit=4, lease_seconds=30, budget_wait=2.0)
    claimed = {c.row.app_order_id for c in claims}
    assert len(claimed) == 4
    assert len(claimed & set(deferred)) == 2  # the oldest of A and of B alternate
    assert len(claimed & set(backlog)) == 2


async def test_a_claim_defers_the_checkouts_of_a_closed_merchant(orch: Orchestrator) -> None:
    busy = await _due_checkouts(orch, SHOP_A, 5)
    small = await _due_checkouts(orch, SHOP_B, 2)
    await MerchantBudgets(orch.repo).rate_limited([merchant_key(SHOP_A)], 60.0)
    claims = await orch.repo.claim_due(worker="w", limit=10, lease_seconds=30, budget_wait=2.0)
    assert sorted(c.row.app_order_id for c in claims) == sorted(small)
    later = await _scalar(
        orch,
        "SELECT min(next_attempt_at) - now() FROM checkouts WHERE app_order_id = ANY(%(ids)s)",
        {"ids": busy},
    )
    assert later.total_seconds() > 50  # due when A's budget opens, out of the claim's way


async def test_the_fair_claim_reads_the_due_index(orch: Orchestrator) -> None:
    await _due_checkouts(orch, SHOP_A, 3)
    sent = {"worker": "w", "limit": 5, "lease_s": 30.0, "window": 64, "wait_s": 2.0}
    async with orch.engine.connect() as conn:
        await conn.exec_driver_sql("SET enable_seqscan = off")
        result = await conn.exec_driver_sql("EXPLAIN " + checkout_sql.CLAIM_FAIR_SQL, sent)
        plan = "\n".join(str(row[0]) for row in result.all())
    assert "ix_checkouts_due" in plan, plan
    assert "Seq Scan on checkouts" not in plan, plan


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    """A JSON plan node and every node under it."""
    return [node, *itertools.chain.from_iterable(_plan_nodes(n) for n in node.get("Plans", []))]


async def test_the_fair_claim_judges_each_merchant_once_and_locks_only_what_it_claims(
    orch: Orchestrator,
) -> None:
    """Its cost follows the merchants and the claim's size, not the due rows in its window: a
    budget lookup per merchant set, and rows locked in turn order until the claim is full."""
    await _due_checkouts(orch, SHOP_A, 20)
    await _due_checkouts(orch, SHOP_B, 20)
    await _due_checkouts(orch, SHOP_A + 2, 20)
    sent = {"worker": "w", "limit": 5, "lease_s": 30.0, "window": 64, "wait_s": 2.0}
    async with orch.engine.connect() as conn, conn.begin():
        # A table this small is read and joined whole; what is checked is that a plan keeping
        # the ready rows' order (a nested loop) stops locking at the claim's size.
        for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
            await conn.exec_driver_sql(f"SET LOCAL {setting} = off")
        result = await conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + checkout_sql.CLAIM_FAIR_SQL, sent
        )
        plan = result.scalar_one()[0]["Plan"]
        await conn.rollback()
    nodes = _plan_nodes(plan)
    budget_reads = [n for n in nodes if n.get("Relation Name") == "violet_throttle"]
    assert budget_reads and all(n["Actual Loops"] <= 3 for n in budget_reads), budget_reads
    cur = next(n for n in nodes if n.get("Subplan Name") == "CTE cur")
    joins = [n for n in _plan_nodes(cur) if n["Node Type"] == "Nested Loop"]
    assert joins and all(n["Actual Rows"] == 5 for n in joins), joins  # not all 60 ready rows


async def test_a_turn_is_taken_on_an_unlogged_table(orch: Orchestrator) -> None:
    """A take is a write on every paced call: on an unlogged table its commit waits for no WAL
    flush (migration 0017); what it holds is relearned from 429s after a crash."""
    persistence = await _scalar(
        orch, "SELECT relpersistence FROM pg_class WHERE oid = 'violet_throttle'::regclass"
    )
    assert persistence == "u"


async def test_an_unpaced_budget_is_trusted_for_a_while_and_its_calls_counted_later(
    orch: Orchestrator,
) -> None:
    """A budget seen unpaced and open lets calls go without a statement for `unpaced_ttl`,
    counted by the next statement; another process's 429 is seen once that has passed, this
    process's own at once."""
    ttl = 0.3
    mine, other = MerchantBudgets(orch.repo, unpaced_ttl=ttl), MerchantBudgets(orch.repo)
    key = merchant_key(SHOP_A)
    assert await mine.take([key], max_wait=1.0) == 0.0  # a statement: the row is made
    for _ in range(4):
        assert await mine.take([key], max_wait=1.0) == 0.0  # trusted: no statement

    async def calls() -> int:
        return int(
            await _scalar(orch, "SELECT calls FROM violet_throttle WHERE key = %(k)s", {"k": key})
        )

    assert await calls() == 1
    await other.rate_limited([key], 30.0)  # another process is answered 429
    assert await mine.take([key], max_wait=1.0) == 0.0  # not seen yet (within the ttl)
    await asyncio.sleep(ttl)
    assert await mine.take([key], max_wait=1.0) > 20  # seen: its block; deferred
    assert await calls() == 1 + 4 + 1  # the trusted calls were counted with it

    key_b = merchant_key(SHOP_B)
    assert await mine.take([key_b], max_wait=1.0) == 0.0
    await mine.rate_limited([key_b], 30.0)  # this process's own 429: no trust left
    assert await mine.take([key_b], max_wait=1.0) > 20


async def test_a_trust_that_ran_out_is_renewed_by_one_statement(orch: Orchestrator) -> None:
    """Twenty calls at once on a budget whose trust just ran out: one statement renews it, the
    others go on the trust it keeps meanwhile (counted later), not twenty statements."""
    ttl = 0.2
    mine = MerchantBudgets(orch.repo, unpaced_ttl=ttl)
    key = merchant_key(SHOP_A)
    assert await mine.take([key], max_wait=1.0) == 0.0
    await asyncio.sleep(ttl + 0.05)
    waits = await asyncio.gather(*(mine.take([key], max_wait=1.0) for _ in range(20)))
    assert waits == [0.0] * 20
    calls = await _scalar(orch, "SELECT calls FROM violet_throttle WHERE key = %(k)s", {"k": key})
    assert calls == 2  # the first take and the renewal; 19 counted by the next statement


async def test_calls_on_a_trusted_budget_are_counted_by_a_flush(orch: Orchestrator) -> None:
    """A process closing (or its recovery job going idle) adds the calls it let through on
    trust, so `stats` counts every call the merchant was sent."""
    mine = MerchantBudgets(orch.repo, unpaced_ttl=60.0)
    key = merchant_key(SHOP_A)
    for _ in range(5):
        assert await mine.take([key], max_wait=1.0) == 0.0
    (before,) = [b for b in await mine.all() if b.key == key]
    assert before.calls == 1  # one statement, four calls on trust
    await mine.flush()
    await mine.flush()  # nothing left: counted once
    (after,) = [b for b in await mine.all() if b.key == key]
    assert after.calls == 5


class _DownRunner:
    """A runner whose database is down: every statement raises what psycopg raises."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.down = False

    async def rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        if self.down:
            raise psycopg.OperationalError("connection refused")
        rows: list[dict[str, Any]] = await self.real.rows(sql, params)
        return rows


async def test_a_quiet_flush_with_the_database_down_keeps_the_counts_and_raises_nothing(
    orch: Orchestrator,
) -> None:
    """A closing or idle process counts trusted calls best effort: a database that is down
    raises nothing out of it, and the counts wait for the next statement that reaches it."""
    runner = _DownRunner(orch.repo)
    mine = MerchantBudgets(runner, unpaced_ttl=60.0)
    key = merchant_key(SHOP_A)
    for _ in range(3):
        assert await mine.take([key], max_wait=1.0) == 0.0
    runner.down = True
    await mine.flush_quietly(2.0)
    runner.down = False
    await mine.flush_quietly(2.0)
    (after,) = [b for b in await mine.all() if b.key == key]
    assert after.calls == 3
