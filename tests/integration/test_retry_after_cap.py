"""One hostile Retry-After cannot stop the fleet: the wait is capped (ORCHESTRATOR_MAX_RETRY_AFTER),
the checkout is scheduled, not left in flight, and `recover --once` returns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from orchestrator.api import Orchestrator
from orchestrator.recovery import RecoveryJob
from orchestrator.sandbox import SandboxControl
from tests.fixtures.db import run_sql
from tests.fixtures.orchestrator import DIGITAL, TOKEN, checkout_request, make_settings
from tests.fixtures.sandbox import IN_PROCESS_BASE_URL

CAP_S = 1.0
#: Only a guard against a hang: with the cap the run takes about CAP_S.
HANG_GUARD_S = 60.0


@pytest.fixture
async def capped(
    database_url: str, sandbox_transport: httpx.AsyncBaseTransport
) -> AsyncIterator[Orchestrator]:
    settings = make_settings(database_url, IN_PROCESS_BASE_URL, max_retry_after=CAP_S)
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        yield orch


async def _within_cap(orch: Orchestrator, sql: str) -> bool:
    async with orch.engine.connect() as conn:
        value = (await conn.exec_driver_sql(sql, {"cap": CAP_S})).scalar_one()
    return bool(value)


@pytest.mark.parametrize(
    "retry_after",
    ["1000000000", "1e15", "inf", "9" * 400, "Fri, 31 Dec 9999 23:59:59 GMT"],
)
async def test_a_huge_retry_after_is_capped_and_recovery_goes_on(
    retry_after: str,
    capped: Orchestrator,
    sandbox_control: SandboxControl,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await sandbox_control.add_fault("create_cart", "rate_limit", retry_after=retry_after)
    with caplog.at_level(logging.WARNING, logger="orchestrator.engine.retries"):
        started = await capped.start(checkout_request(skus=DIGITAL, payment=TOKEN))
    assert started.state == "new" and not started.in_flight
    assert started.lease_owner is None and started.last_error is not None
    assert started.last_error["type"] == "rate_limited"
    assert await _within_cap(
        capped,
        "SELECT blocked_until <= now() + %(cap)s * interval '1 second' "
        "FROM violet_throttle WHERE key = 'global'",
    )
    assert await _within_cap(
        capped,
        "SELECT next_attempt_at <= now() + %(cap)s * interval '1 second' FROM checkouts",
    )

    capped_waits = [r for r in caplog.records if "Retry-After" in r.getMessage()]
    assert len(capped_waits) == 1, "logged once per answer"

    summary = await asyncio.wait_for(RecoveryJob(capped.worker).run("once"), HANG_GUARD_S)
    assert summary.claimed == 1 and summary.submitted == 1


async def test_a_throttle_set_far_beyond_the_cap_is_shortened_to_it(
    capped: Orchestrator, database_url: str
) -> None:
    """A block written by hand (or before the cap existed) until 2058 holds recovery for at most
    the cap, and is shortened in the table for every other worker too."""
    await capped.start(checkout_request(skus=DIGITAL, payment=TOKEN), run=False)
    await run_sql(
        database_url,
        "INSERT INTO violet_throttle (key, blocked_until) "
        "VALUES ('global', now() + interval '32 years')",
        {},
    )
    summary = await asyncio.wait_for(RecoveryJob(capped.worker).run("once"), HANG_GUARD_S)
    assert summary.claimed == 1 and summary.submitted == 1
    assert await _within_cap(
        capped,
        "SELECT blocked_until <= now() + %(cap)s * interval '1 second' "
        "FROM violet_throttle WHERE key = 'global'",
    )
