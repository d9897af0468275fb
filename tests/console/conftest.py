"""The console over HTTP (httpx's ASGI transport) against a real database, with checkouts made
through the in-process sandbox in the situations an operator meets: submitted, declined,
retries exhausted, waiting for the shopper, canceled, and one scheduled for a retry."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from orchestrator.api import Orchestrator
from orchestrator.checkout import Checkout
from orchestrator.config import Settings
from orchestrator.console import create_app
from orchestrator.sandbox import SandboxControl
from tests.fixtures.orchestrator import (
    DECLINED,
    DIGITAL,
    INTENT,
    TOKEN,
    VISA,
    checkout_request,
    make_settings,
)
from tests.fixtures.sandbox import IN_PROCESS_BASE_URL

OPERATOR = ("alice", "alice-password")
VIEWER = ("victor", "victor-password")
BEARER_VIEWER = "ci-viewer-token-0123456789"
BEARER_OPERATOR = "ci-operator-token-0123456789"
LOGINS: dict[str, Any] = {
    "console_users": f"{OPERATOR[0]}:operator:{OPERATOR[1]},{VIEWER[0]}:viewer:{VIEWER[1]}",
    "console_tokens": f"ci:viewer:{BEARER_VIEWER},deploy:operator:{BEARER_OPERATOR}",
}
#: The card of the submitted checkout: a CVC no id, amount or time on a page can contain.
CARD = {**VISA, "card_cvc": "7391"}
CARD_NUMBER = VISA["card_number"]


def basic(user: tuple[str, str]) -> dict[str, str]:
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def csrf_of(page: str) -> str:
    """The CSRF token of the first form of a page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


@dataclass
class Shop:
    """The checkouts of one test's database, by situation."""

    orch: Orchestrator
    settings: Settings
    control: SandboxControl
    submitted: Checkout
    declined: Checkout
    exhausted: Checkout
    waiting: Checkout
    canceled: Checkout
    scheduled: Checkout

    def client(self, **settings: Any) -> httpx.AsyncClient:
        """A client of a console on this database (settings over the shop's)."""
        return console_client(self.orch, self.settings, **settings)


def console_client(
    orch: Orchestrator, base: Settings, *, host: str = "127.0.0.1", **settings: Any
) -> httpx.AsyncClient:
    values = {**base.model_dump(exclude={"console_users", "console_tokens"}), **settings}
    app = create_app(Settings(**values), engine=orch.engine, orchestrator=orch)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=f"http://{host}", follow_redirects=False
    )


@pytest.fixture
def shop_settings(database_url: str) -> Settings:
    return make_settings(database_url, IN_PROCESS_BASE_URL, max_attempts=2)


@pytest.fixture
async def shop(
    shop_settings: Settings,
    sandbox_transport: httpx.AsyncBaseTransport,
    sandbox_control: SandboxControl,
) -> AsyncIterator[Shop]:
    async with Orchestrator(shop_settings, violet_transport=sandbox_transport) as orch:
        submitted = await orch.start(checkout_request(payment=CARD))
        declined = await orch.start(checkout_request(payment=DECLINED))
        await sandbox_control.add_fault("customer", "error", status=503, count=10)
        exhausted = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        exhausted = await orch.run(exhausted.id, retry_wait=5.0)
        await sandbox_control.clear_faults()
        waiting = await orch.start(checkout_request(skus=DIGITAL, payment=INTENT))
        canceled = await orch.start(checkout_request(payment=TOKEN), run=False)
        canceled = await orch.cancel(canceled.id)
        await sandbox_control.add_fault("create_cart", "rate_limit", retry_after="120")
        scheduled = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        await sandbox_control.clear_faults()
        found = {
            "submitted": submitted.state,
            "declined": declined.state,
            "exhausted": (exhausted.state, (exhausted.last_error or {}).get("type")),
            "waiting": waiting.state,
            "canceled": canceled.state,
            "scheduled": (scheduled.state, scheduled.next_attempt_at is not None),
        }
        assert found == {
            "submitted": "submitted",
            "declined": "failed",
            "exhausted": ("failed", "retries_exhausted"),
            "waiting": "awaiting_confirmation",
            "canceled": "canceled",
            "scheduled": ("new", True),
        }
        yield Shop(
            orch,
            shop_settings,
            sandbox_control,
            submitted,
            declined,
            exhausted,
            waiting,
            canceled,
            scheduled,
        )


ClientFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def local(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    """A console with no login configured, asked from this machine: an operator."""
    async with shop.client() as client:
        yield client


@pytest.fixture
async def guarded(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    """A console with logins: each request says who it is."""
    async with shop.client(**LOGINS) as client:
        yield client
