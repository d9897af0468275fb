"""A second review of the session-5 fixes: what they broke or missed, one test each.

Each test failed on the reviewed code; its docstring names the interleaving and what it did to a
checkout. Fixed: failed probes no longer use up a step's attempts; a poisoned submit gets one
read, not endless ones; the card scan spares UUIDs as the database does; a whole Violet call
(auth, retries) ends within the total timeout and the settle window counts a resumed submit's
cart read; cancel waits out a create_cart that may still be running; run() hands back a lease
it took for nothing; a password in the URL's query is masked; a bad token names payment.token."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import psycopg
import pytest

from orchestrator.api import Orchestrator
from orchestrator.config import Settings
from orchestrator.recovery import RecoveryJob
from orchestrator.sandbox import SandboxControl
from tests.fixtures.db import libpq_url, run_sql
from tests.fixtures.orchestrator import DIGITAL, TOKEN, checkout_request, make_settings
from tests.fixtures.sandbox import HttpSandbox


def _one_second_calls(database_url: str, base_url: str) -> Settings:
    """Calls of at most 1 s and a 0.3 s settle time: a settle window of 2 x 1.0 + 0.3 s."""
    return make_settings(
        database_url, base_url, submit_settle_seconds=0.3, read_timeout=1.0, total_timeout=1.0
    )


# ---------------------------------------------------------------------------------------------
# 1. Failed probes now count towards max_attempts on the Redo path.


async def test_failed_probes_do_not_exhaust_a_submit_that_violet_never_applied(
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> None:
    """runner.py:196 (`row.attempt += 1` on a failed reconcile probe) + runner.py:219
    (`if row.attempt >= self.retry.max_attempts: _exhausted`). The commit says a failed probe
    "never exhausts", but the bumped attempt is checked as soon as a probe *answers* "not done":
    a submit whose request never reached Violet (connection dropped before apply), followed by
    max_attempts-1 failed GET-cart probes (Violet flaky for a few seconds), is failed for good
    with `retries_exhausted` after exactly ONE submit was ever sent. Before the change attempt
    stayed 1 and the Redo submitted once more: the checkout completed."""
    settings = make_settings(
        database_url,
        "http://sandbox/v1",
        max_attempts=3,
        submit_settle_seconds=0.0,
        total_timeout=0.2,
    )
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        await sandbox_control.add_fault("submit", "drop_before_apply", count=1)
        first = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        assert (first.state, first.pending_step, first.in_flight) == ("priced", "submit", True)
        assert (await sandbox_control.cart(first.violet_order_id))["status"] == "IN_PROGRESS"
        # Violet's GET is down for a moment: two probes fail (each is retried inline 4 times
        # by the client), fewer than max_attempts.
        await sandbox_control.add_fault("get_cart", "error", count=8, status=500)
        await asyncio.sleep(0.3)  # past the settle window
        await RecoveryJob(orch.worker).run("until-idle", concurrency=1)
        checkout = await orch.get(first.id)
        submits = (await sandbox_control.stats())["calls_by_op"]["submit"]
    assert checkout.state == "submitted", (
        f"one submit sent, never applied, yet the checkout ended {checkout.state}: "
        f"{checkout.last_error}; submits sent: {submits}"
    )


# ---------------------------------------------------------------------------------------------
# 2. The settle window assumes the submit request leaves at the step's start; a resumed submit
#    first GETs the cart, so it may leave up to a whole total_timeout later.


async def test_a_resumed_submit_behind_a_slow_cart_read_is_not_resubmitted_while_running(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    """runner.py:136 `settle_window = client.total_timeout + settle_seconds`, measured by
    steps.py `_settle_or_redo` from `step_started_at` (the intent commit). But a submit that is
    resumed (here: after a 503 that Violet never applied; equally after a Redo or a 3-D Secure
    confirm) runs `Submit.call` with `last_cart None`, which first does `get_cart` and only then
    sends the submit: the submit leaves up to one total_timeout (`asyncio.timeout` in
    client.py `_exchange` is per request, not per call) after the step start, so it may still be
    running at Violet until 2 x total_timeout + settle. Here: total 1.0 s, settle 0.3 s
    (window 1.3 s before the fix); the cart read takes 0.8 s, the submit 1.2 s (the client gives
    up at 1.8 s, Violet applies it at 2.0 s, within the settle time after that): the reconcile at
    ~1.85 s found the cart IN_PROGRESS, called it settled and submitted the cart a second time
    while the first submit was still running. Now the window is 2 x 1.0 + 0.3 = 2.3 s."""
    settings = _one_second_calls(database_url, http_sandbox.base_url)  # window 2.3 s
    control = http_sandbox.control
    async with Orchestrator(settings) as orch:
        await control.add_fault("submit", "error", count=1, status=503)  # not applied
        first = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        assert (first.state, first.pending_step, first.in_flight) == ("priced", "submit", False)
        await control.add_fault("get_cart", "latency", count=1, latency_ms=800)
        await control.add_fault("submit", "latency", count=1, latency_ms=1200)
        done = await orch.run(first.id, retry_wait=5)
        await asyncio.sleep(1.0)  # let the slow submit finish at the sandbox
        stats = await control.stats()
    # The 503 (never applied), then exactly one submit that Violet applies.
    assert stats["calls_by_op"]["submit"] == 2 and stats["duplicate_submits"] == {}, (
        "the cart was submitted again while the previous submit was still running at Violet",
        done.state,
        stats["calls_by_op"]["submit"],
        stats["duplicate_submits"],
    )


# ---------------------------------------------------------------------------------------------
# 3. Cancel's new "release the cart create_cart's lost answer made" looks only once, at once.


async def test_cancel_inside_the_create_cart_settle_window_does_not_leak_the_cart(
    database_url: str, http_sandbox: HttpSandbox
) -> None:
    """runner.py `_carts_to_release` (cancel with create_cart in flight): one `search_orders`
    by app_order_id, right now. The settle window the same commit introduced for create_cart's
    reconcile (a create that timed out may still be running at Violet for total_timeout +
    settle) is ignored here: a cancel that lands while the create is still running finds
    nothing, the checkout goes terminal `canceled` with `violet_cart_released: false`, and the
    cart Violet then creates is IN_PROGRESS forever with nothing left to release it (the case
    commit 9a81e83 meant to close; design §3 "an orphan ... recorded and released")."""
    settings = _one_second_calls(database_url, http_sandbox.base_url)  # window 2.3 s
    control = http_sandbox.control
    request = checkout_request(skus=DIGITAL, payment=TOKEN)
    async with Orchestrator(settings) as orch:
        await control.add_fault("create_cart", "latency", count=1, latency_ms=1500)
        first = await orch.start(request)
        assert (first.state, first.pending_step, first.in_flight) == ("new", "create_cart", True)
        canceled = None
        with contextlib.suppress(Exception):  # refusing (or deferring) the cancel is a fix too
            canceled = await orch.cancel(first.id)
        await asyncio.sleep(1.5)  # the slow create finishes at Violet; the window (2.3 s) passes
        if canceled is None:  # refused while the create may still run: cancel again after it
            canceled = await orch.cancel(first.id)
        stats = await control.stats()
    carts = stats["carts_by_app_order_id"].get(request["app_order_id"], [])
    assert carts, "the slow create_cart never made its cart (test setup)"
    leaked = [c for c in carts if c not in stats["deleted_carts"]]
    assert leaked == [], (
        f"canceled checkout left Violet cart(s) {leaked} IN_PROGRESS and unreleased",
        canceled.state if canceled else None,
    )


# ---------------------------------------------------------------------------------------------
# 4. `run()` has the read-then-claim race `_claim_while` closed for the other commands.


async def test_run_racing_a_drive_to_a_waiting_state_does_not_keep_the_lease(
    settings: Any,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """api.py `run`: the row is read (pending step set), then `repo.claim` is called and the
    claimed row is driven whatever it now is. When another worker parked it meanwhile (here in
    `awaiting_confirmation`, lease released, not due), the claim takes the lease (and sets
    `next_attempt_at` to the lease expiry), the drive has nothing to do, and nothing gives the
    lease back: the shopper's `confirm_payment` is refused with CheckoutBusy for lease_seconds
    and recovery later logs a `lease_taken_over` of a checkout nobody was driving. The fix
    commit's `_claim_while` + `LeaseKeeper.release` (and RecoveryJob's release of a waiting row)
    were not applied to `run()`."""
    from orchestrator.errors import CheckoutBusy
    from tests.fixtures.orchestrator import INTENT

    async with (
        Orchestrator(settings, violet_transport=sandbox_transport) as owner,
        Orchestrator(settings, violet_transport=sandbox_transport) as other,
    ):
        registered = await owner.start(checkout_request(skus=DIGITAL, payment=INTENT), run=False)
        real_claim = owner.repo.claim

        async def claim_after_another_worker_parked_it(checkout_id: Any, **kwargs: Any) -> Any:
            parked = await other.run(checkout_id)  # lands between run()'s read and its claim
            assert parked.state == "awaiting_confirmation"
            return await real_claim(checkout_id, **kwargs)

        monkeypatch.setattr(owner.repo, "claim", claim_after_another_worker_parked_it)
        result = await owner.run(registered.id)
        monkeypatch.setattr(owner.repo, "claim", real_claim)
        assert result.state == "awaiting_confirmation"
        row = await owner.repo.get(registered.id)
        assert row is not None
        await sandbox_control.confirm_payment(result.violet_order_id)  # the shopper confirms
        busy = None
        try:
            await other.confirm_payment(registered.id)
        except CheckoutBusy as exc:
            busy = exc
    assert (row.lease_owner, row.next_attempt_at) == (None, None), (
        f"run() kept the lease of a waiting checkout until {row.lease_expires_at}",
        str(busy),
    )


# ---------------------------------------------------------------------------------------------
# 5. The Python card-number scan, now applied to every string field, is stricter than the
#    database tripwire it claims to mirror: UUIDs are exempt in the database, not in Python.

_UUID_WITH_DIGIT_GROUPS = "4b3c2d1e-9f8a-4c7d-0423-683873806956"  # "0423683873806956" is Luhn-valid


@pytest.mark.parametrize(
    "field",
    ["payment.token", "shipping_address.address_2", "app_order_id"],
)
async def test_a_uuid_the_database_accepts_is_not_refused_as_a_card_number(
    database_url: str, field: str
) -> None:
    """request.py `_Strict._storable` (field_validator("*")) + `contains_card_number`/`_DIGIT_RUN`:
    a digit run is checked even when it is dash-joined to a hex group, while the database's
    `orchestrator_find_card_number` (migrations 0001) skips such runs on purpose ("so UUIDs
    never match"). A UUID-shaped payment token (e.g. a provider nonce) or a UUID in an address
    line, both accepted before this change (only app_order_id was scanned; a UUID app_order_id
    already had the same false positive), is now refused as "a card number" although the
    database would store it. About 1 in 10 UUIDs whose last groups are all decimal hit this."""
    from orchestrator.request import CheckoutRequest
    from tests.fixtures.orchestrator import ADDRESS

    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as conn:
        cur = await conn.execute(
            "SELECT orchestrator_find_card_number(%s)", (f'{{"v": "{_UUID_WITH_DIGIT_GROUPS}"}}',)
        )
        row = await cur.fetchone()
    assert row is not None and row[0] is None, "premise: the database tripwire accepts this UUID"

    request = checkout_request(skus=DIGITAL, payment=dict(TOKEN))
    request["shipping_address"] = dict(ADDRESS)
    if field == "payment.token":
        request["payment"]["token"] = _UUID_WITH_DIGIT_GROUPS
    elif field == "shipping_address.address_2":
        request["shipping_address"]["address_2"] = f"Unit {_UUID_WITH_DIGIT_GROUPS}"
    else:
        request["app_order_id"] = _UUID_WITH_DIGIT_GROUPS
    CheckoutRequest.parse(request)  # raises InvalidRequest "... passes the card-number checksum"


# ---------------------------------------------------------------------------------------------
# 6. Database password masking misses libpq's `?password=` form.


def test_a_database_password_given_as_a_query_parameter_is_masked_too() -> None:
    """config.py `masked_url` (used by `Settings.__repr_args__`, `public_values` and so by
    `orchestrator config`): `render_as_string(hide_password=True)` masks only the userinfo
    password. libpq (and psycopg, through SQLAlchemy's query arguments) also takes the password
    as `?password=...`, the form many secret managers emit; it is printed in clear by
    `orchestrator config`, by `repr(settings)` and by anything that logs the settings."""
    secret = "hunter2-s3cret"
    settings = Settings(
        database_url=f"postgresql://app@db.internal/orders?sslmode=require&password={secret}"
    )
    shown = {
        "repr": repr(settings),
        "str": str(settings),
        "public_values": str(settings.public_values()["database_url"]),
    }
    leaked = {where: text for where, text in shown.items() if secret in text}
    assert leaked == {}, leaked


# ---------------------------------------------------------------------------------------------
# 7. Poison no longer ends a crash loop when the loop is in a submit's reconcile probe.


async def test_a_submit_whose_reconcile_keeps_killing_the_worker_is_still_parked(
    database_url: str,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """runner.py:168-171: with a submit in flight, a poisoned checkout (recoveries >
    max_recoveries) now runs `Submit.reconcile` first instead of being parked. The poison guard
    exists for checkouts their workers keep dying on; when the worker dies *in that probe*
    (here: the GET-cart answer makes it raise, as a malformed cart or an OOM while parsing would),
    every recovery claims it again after the lease expires, bumps `recoveries`, probes and dies:
    the loop the guard was meant to end never ends (before the change it was failed as poison
    after max_recoveries). Expected: parked somewhere no worker picks it up again (a waiting
    state with a reason, or terminal), without claiming Violet's order away."""
    settings = make_settings(database_url, "http://sandbox/v1", max_recoveries=2)
    async with Orchestrator(settings, violet_transport=sandbox_transport) as orch:
        await sandbox_control.add_fault("submit", "drop_after_apply", count=1)
        first = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        assert (first.state, first.pending_step, first.in_flight) == ("priced", "submit", True)

        async def dies_reading_the_cart(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError("worker dies while reading the cart")

        monkeypatch.setattr(orch.client, "get_cart", dies_reading_the_cart)
        for _ in range(settings.max_recoveries + 10):  # a round need not claim it every time
            current = await orch.repo.get(first.id)
            if current is not None and current.state == "failed":
                break
            await run_sql(  # the dead worker's lease has expired
                database_url,
                "UPDATE checkouts SET lease_expires_at = now() - interval '1 s', "
                "next_attempt_at = now() - interval '1 s' "
                "WHERE id = %(id)s AND lease_owner IS NOT NULL",
                {"id": first.id},
            )
            await RecoveryJob(orch.worker).run("once")
        row = await orch.repo.get(first.id)
    assert row is not None
    still_looping = row.state not in ("submitted", "failed", "canceled") and (
        row.pending_step is not None
    )
    assert not still_looping, (
        f"after {row.recoveries} crash recoveries (max {settings.max_recoveries}) the checkout is "
        f"still {row.state}/{row.pending_step}/in_flight={row.in_flight} and claimed again",
    )


# ---------------------------------------------------------------------------------------------
# 8. "Refused naming its field": a bad payment token is reported as plain "payment".


def test_a_bad_payment_token_is_refused_naming_payment_token() -> None:
    """errors.py `InvalidRequest.from_validation` drops every location part found in
    `_UNION_TAGS` ({"card", "token", "intent"}), meant for the discriminator tags; the token
    payment's field is itself called `token`, so its location ("payment", "token", "token")
    loses both parts. With the new `_storable` checks (NUL, card number) the token is now a field
    that gets refused, and the message names only "payment"."""
    from orchestrator.errors import InvalidRequest
    from orchestrator.request import CheckoutRequest

    request = checkout_request(
        skus=DIGITAL, payment={"type": "token", "token": "tok\x00visa", "provider": "STRIPE"}
    )
    with pytest.raises(InvalidRequest) as refused:
        CheckoutRequest.parse(request)
    assert [name for name, _ in refused.value.fields] == ["payment.token"], refused.value.fields
