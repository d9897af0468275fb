"""`orchestrator demo`: the whole flow on one machine, offline, in well under a minute.

It serves the built-in sandbox over HTTP from a thread of this process, drives a handful of
checkouts (single and multi-merchant, partial acceptance, a declined card, 3-D Secure, a payment
intent), then makes a child worker die (SIGKILL at a named crash point, right after Violet took the
submit) and recovers its checkout here: the timeline shows the takeover and the reconciliation,
and the sandbox shows exactly one submit. Last, it follows the two-merchant order's bags after
submit over webhooks (demo_after_submit.py): one shipped, one refunded. Nothing is left running
afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import audit
from orchestrator.api import Orchestrator
from orchestrator.checkout import AuditEvent, Checkout
from orchestrator.cli import demo_after_submit as after
from orchestrator.cli.demo_serve import served_sandbox
from orchestrator.cli.render import Output, show_timeline
from orchestrator.config import Settings
from orchestrator.errors import CheckoutBusy
from orchestrator.sandbox import SANDBOX_CREDENTIALS, SandboxConfig, SandboxControl
from orchestrator.sandbox.examples import (
    DECLINED,
    INTENT,
    ONE_REJECTED,
    PHYSICAL,
    THREE_DS,
    TOKEN,
    TWO_MERCHANTS,
    VISA,
    example_request,
)
from orchestrator.states import FAILED, SUBMITTED
from orchestrator.store import database

logger = logging.getLogger(__name__)

CRASH_POINT = "after_call:submit"
"""Violet accepted the submit, the worker died before recording it: the hardest case."""

MULTI = "multi"
"""The scenario whose two bags the demo follows after submit."""

_SKUS = {"physical": PHYSICAL, "two_merchants": TWO_MERCHANTS, "one_rejected": ONE_REJECTED}


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    skus: str
    payment: dict[str, Any]
    expected: str
    shopper_confirms: bool = False
    crash: bool = False


SCENARIOS = (
    Scenario("single", "one merchant, card", "physical", VISA, SUBMITTED),
    Scenario(MULTI, "two merchants, token", "two_merchants", TOKEN, SUBMITTED),
    Scenario("partial", "two merchants, one rejects", "one_rejected", TOKEN, SUBMITTED),
    Scenario("declined", "declined card", "physical", DECLINED, FAILED),
    Scenario(
        "3ds",
        "3-D Secure card, confirmed by the shopper",
        "physical",
        THREE_DS,
        SUBMITTED,
        shopper_confirms=True,
    ),
    Scenario(
        "intent",
        "payment intent, confirmed by the shopper",
        "physical",
        INTENT,
        SUBMITTED,
        shopper_confirms=True,
    ),
    Scenario(
        "crash",
        f"worker killed at {CRASH_POINT}, recovered",
        "physical",
        TOKEN,
        SUBMITTED,
        crash=True,
    ),
)


@dataclass(slots=True)
class Outcome:
    scenario: Scenario
    checkout: Checkout | None = None
    events: list[AuditEvent] = field(default_factory=list)
    submits_at_violet: int = 0
    note: str = ""
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.problem is None
            and self.checkout is not None
            and (self.checkout.state == self.scenario.expected)
        )

    def to_json(self) -> dict[str, Any]:
        c = self.checkout
        kinds = {e.kind for e in self.events}
        return {
            "scenario": self.scenario.name,
            "title": self.scenario.title,
            "expected": self.scenario.expected,
            "ok": self.ok,
            "id": None if c is None else str(c.id),
            "app_order_id": None if c is None else c.app_order_id,
            "violet_order_id": None if c is None else c.violet_order_id,
            "state": None if c is None else c.state,
            "partially_accepted": None if c is None else c.partially_accepted,
            "last_error_type": None if c is None else (c.last_error or {}).get("type"),
            "submits_at_violet": self.submits_at_violet,
            "events": len(self.events),
            "lease_taken_over": "lease_taken_over" in kinds,
            "reconciled": "reconciled" in kinds,
            "note": self.note,
            "problem": self.problem,
        }


@dataclass(slots=True)
class DemoResult:
    run_id: str
    database: str
    sandbox: str
    outcomes: list[Outcome]
    after_submit: after.AfterSubmit = field(default_factory=after.AfterSubmit)
    inspect_hint: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes) and self.after_submit.ok

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "run_id": self.run_id,
            "database": self.database,
            "sandbox": self.sandbox,
            "seconds": round(self.seconds, 2),
            "inspect_hint": self.inspect_hint,
            "checkouts": [o.to_json() for o in self.outcomes],
            "after_submit": self.after_submit.to_json(),
        }


# -- the run ----------------------------------------------------------------------------------


def _demo_database(
    settings: Settings,
) -> tuple[str, database.EmbeddedPostgres | None, SandboxConfig]:
    """The configured database, or an embedded one kept apart from the user's (data_dir/demo),
    and the demo's fresh sandbox: its first cart id and webhook event id above every one an
    earlier run left there (the unique `violet_order_id` would refuse a repeated cart id, the
    inbox would take a repeated event id for a redelivery)."""
    if settings.database_url:
        url = database.normalize_url(settings.database_url)
        embedded = None
    else:
        embedded = database.EmbeddedPostgres(settings.data_dir / "demo" / "pgdata")
        url = embedded.start()
    database.migrate(url)
    last_id = database.highest_violet_order_id(url) or 0
    sandbox = SandboxConfig(
        first_cart_id=max(SandboxConfig.first_cart_id, last_id + 1),
        first_event_id=after.highest_event_id(url) + 1,
    )
    return url, embedded, sandbox


def _request(scenario: Scenario, run_id: str) -> dict[str, Any]:
    return example_request(
        f"demo-{run_id}-{scenario.name}", skus=_SKUS[scenario.skus], payment=scenario.payment
    )


def _demo_settings(url: str, sandbox_root: str) -> Settings:
    return Settings(
        database_url=url,
        violet_base_url=f"{sandbox_root}/v1",
        violet_app_id=SANDBOX_CREDENTIALS["app_id"],
        violet_app_secret=SANDBOX_CREDENTIALS["app_secret"],
        violet_username=SANDBOX_CREDENTIALS["username"],
        violet_password=SANDBOX_CREDENTIALS["password"],
        lease_seconds=1.0,
        submit_settle_seconds=1.0,
        backoff_base=0.05,
        backoff_cap=0.5,
    )


def _child_environment(settings: Settings) -> dict[str, str]:
    """Everything the crashing worker needs, by environment (never on its command line)."""
    env = dict(os.environ)
    assert settings.violet_app_secret is not None and settings.violet_password is not None
    env.update(
        {
            "ORCHESTRATOR_TEST_MODE": "1",
            "ORCHESTRATOR_CRASH_AT": CRASH_POINT,
            "ORCHESTRATOR_DATABASE_URL": str(settings.database_url),
            "ORCHESTRATOR_LEASE_SECONDS": str(settings.lease_seconds),
            "VIOLET_BASE_URL": settings.violet_base_url,
            "VIOLET_APP_ID": str(settings.violet_app_id),
            "VIOLET_APP_SECRET": settings.violet_app_secret.get_secret_value(),
            "VIOLET_USERNAME": str(settings.violet_username),
            "VIOLET_PASSWORD": settings.violet_password.get_secret_value(),
        }
    )
    return env


def _crash_child(request: dict[str, Any], settings: Settings) -> int:
    """Run `orchestrator checkout start` in a child that dies at the crash point; its exit code."""
    with tempfile.TemporaryDirectory(prefix="orchestrator-demo-") as tmp:
        path = Path(tmp) / "checkout.json"
        path.write_text(json.dumps(request), encoding="utf-8")
        completed = subprocess.run(
            [sys.executable, "-m", "orchestrator", "checkout", "start", str(path), "--json"],
            env=_child_environment(settings),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if completed.returncode != -signal.SIGKILL:
        logger.warning("demo worker exited %s: %s", completed.returncode, completed.stderr[-2000:])
    return completed.returncode


async def _recover(orch: Orchestrator, ref: str, deadline_s: float = 20.0) -> Checkout:
    """Take over the dead worker's checkout once its lease expires, reconcile, and finish it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while True:
        try:
            return await orch.run(ref, retry_wait=5.0)
        except CheckoutBusy:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _play(
    orch: Orchestrator,
    control: SandboxControl,
    scenario: Scenario,
    run_id: str,
    progress: Callable[[str], None],
) -> Outcome:
    outcome = Outcome(scenario)
    request = _request(scenario, run_id)
    if scenario.crash:
        code = await asyncio.to_thread(_crash_child, request, orch.settings)
        if code != -signal.SIGKILL:
            outcome.problem = f"the worker was expected to die by SIGKILL, it exited {code}"
        else:
            dead = await orch.get(request["app_order_id"])
            outcome.note = (
                f"worker killed by SIGKILL with the checkout {dead.state}, "
                f"step {dead.pending_step} in flight"
            )
            progress(f"   {outcome.note}; recovering after its lease expires")
        checkout = await _recover(orch, request["app_order_id"])
    else:
        checkout = await orch.start(request)
        if scenario.shopper_confirms and checkout.violet_order_id is not None:
            outcome.note = f"waited in {checkout.state}; shopper confirmed in the sandbox"
            if checkout.handout.get("payment_intent_client_secret"):
                outcome.note += " (client secret handed out, not shown)"
            await control.confirm_payment(checkout.violet_order_id)
            checkout = await orch.confirm_payment(checkout.id)
    outcome.checkout = checkout
    outcome.events = await audit.timeline(orch.engine, checkout.id)
    if checkout.violet_order_id is not None:
        stats = await control.stats()
        outcome.submits_at_violet = int(stats["submits"].get(str(checkout.violet_order_id), 0))
    if checkout.state == SUBMITTED and outcome.submits_at_violet != 1:
        outcome.problem = f"Violet saw {outcome.submits_at_violet} submits, expected exactly 1"
    if scenario.crash and not {"lease_taken_over", "reconciled"} <= {
        e.kind for e in outcome.events
    }:
        outcome.problem = outcome.problem or "no takeover and reconciliation in the timeline"
    mark = "ok" if outcome.ok else "UNEXPECTED"
    progress(f"   {scenario.title}: {checkout.state} [{mark}]")
    return outcome


async def run_demo(
    settings: Settings, *, progress: Callable[[str], None] = lambda line: None
) -> DemoResult:
    """Run every scenario; `settings` supplies only the database (or the data dir)."""
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:8]
    progress("starting the database and the local Violet sandbox ...")
    url, embedded, sandbox = await asyncio.to_thread(_demo_database, settings)
    try:
        with served_sandbox(sandbox) as root:
            demo_settings = _demo_settings(url, root)
            result = DemoResult(run_id, database.describe_url(url), f"{root}/v1", [])
            result.inspect_hint = _inspect_hint(settings, run_id)
            async with (
                Orchestrator(demo_settings) as orch,
                SandboxControl(f"{root}/_sandbox") as control,
            ):
                feed_from = await after.feed_position(orch)
                for number, scenario in enumerate(SCENARIOS, start=1):
                    progress(f"{number}. {scenario.title}")
                    result.outcomes.append(await _play(orch, control, scenario, run_id, progress))
                progress(f"{len(SCENARIOS) + 1}. after submit: one bag shipped, one refunded")
                multi = next(o.checkout for o in result.outcomes if o.scenario.name == MULTI)
                result.after_submit = await after.play_after_submit(
                    orch, control, multi, feed_from, progress
                )
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
    result.seconds = time.monotonic() - started
    return result


def _inspect_hint(settings: Settings, run_id: str) -> str:
    """The command that shows the crashed checkout again (the demo's own embedded database)."""
    command = f"orchestrator audit demo-{run_id}-crash"
    if settings.database_url:
        return command
    return f"ORCHESTRATOR_DATA_DIR={settings.data_dir / 'demo'} {command}"


def show(out: Output, result: DemoResult) -> None:
    """Each checkout's timeline, then a one-line verdict per checkout."""
    for outcome in result.outcomes:
        checkout = outcome.checkout
        if checkout is None:
            continue
        out.line()
        title = f"{outcome.scenario.title}: {checkout.app_order_id} -> {checkout.state}"
        show_timeline(out, outcome.events, title=title)
        if outcome.note:
            out.line(f"note: {outcome.note}")
    after.show_after_submit(out, result.after_submit)
    out.line()
    for outcome in result.outcomes:
        c = outcome.checkout
        state = "-" if c is None else c.state
        extra = " (partially accepted)" if c is not None and c.partially_accepted else ""
        verdict = "ok" if outcome.ok else f"UNEXPECTED: {outcome.problem or 'wrong state'}"
        out.line(
            f"{outcome.scenario.title:<45} {state}{extra}, submits at Violet: "
            f"{outcome.submits_at_violet} [{verdict}]",
            style="green" if outcome.ok else "bold red",
        )
    late = result.after_submit
    problem = f"UNEXPECTED: {late.problem or 'wrong bag status'}"
    out.line(
        f"{after.verdict(late)} [{'ok' if late.ok else problem}]",
        style="green" if late.ok else "bold red",
    )
    out.line(f"database {result.database}, sandbox {result.sandbox}, {result.seconds:.1f} s")
    out.line(f"look again later: {result.inspect_hint}")
