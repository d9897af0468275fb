"""A real browser on the console: Playwright driving Debian's Chromium (`/usr/bin/chromium`)
against `orchestrator console` served by uvicorn in its own process, on a database holding
checkouts made through the HTTP sandbox.

Missing Chromium fails these tests with the command that installs it (CI's `.ci/run` does):
they are the proof that the pages work in a browser, not an optional extra. Each test keeps a
screenshot of every page it visits under `tests/browser/artifacts/` (not committed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from orchestrator.api import Orchestrator
from orchestrator.checkout import Checkout
from tests.fixtures.console import ServedConsole, console_env, served_console
from tests.fixtures.orchestrator import (
    DECLINED,
    DIGITAL,
    INTENT,
    TOKEN,
    TWO_MERCHANTS,
    VISA,
    checkout_request,
    make_settings,
)
from tests.fixtures.sandbox import HttpSandbox

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
OPERATOR = ("alice", "alice-password")
VIEWER = ("victor", "victor-password")
USERS = f"{OPERATOR[0]}:operator:{OPERATOR[1]},{VIEWER[0]}:viewer:{VIEWER[1]}"
CARD = {**VISA, "card_cvc": "7391"}


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium, or a failure saying how to install it (never a skip)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. Install it with "
            "`apt-get update && apt-get install -y chromium` (.ci/run does so when it is missing)",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=str(chromium))
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Scene:
    """The served console and the checkouts behind it."""

    console: ServedConsole
    submitted: Checkout
    declined: Checkout
    exhausted: Checkout
    waiting: Checkout
    registered: Checkout
    paused: Checkout

    def url(self, path: str = "") -> str:
        return self.console.url + path.lstrip("/")


@pytest.fixture
async def scene(database_url: str, http_sandbox: HttpSandbox) -> AsyncIterator[Scene]:
    settings = make_settings(database_url, http_sandbox.base_url, max_attempts=2)
    async with Orchestrator(settings) as orch:
        submitted = await orch.start(checkout_request(skus=TWO_MERCHANTS, payment=CARD))
        declined = await orch.start(checkout_request(payment=DECLINED))
        await http_sandbox.control.add_fault("customer", "error", status=503, count=10)
        exhausted = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        exhausted = await orch.run(exhausted.id, retry_wait=5.0)
        await http_sandbox.control.clear_faults()
        waiting = await orch.start(checkout_request(skus=DIGITAL, payment=INTENT))
        registered = await orch.start(checkout_request(payment=TOKEN), run=False)
        # Violet asks for a pause (429): the overview shows it, the checkout waits its turn.
        await http_sandbox.control.add_fault("create_cart", "rate_limit", retry_after="120")
        paused = await orch.start(checkout_request(skus=DIGITAL, payment=TOKEN))
        await http_sandbox.control.clear_faults()
    states = (submitted.state, declined.state, exhausted.state, waiting.state, paused.state)
    assert states == ("submitted", "failed", "failed", "awaiting_confirmation", "new")
    env = console_env(database_url, http_sandbox.base_url, ORCHESTRATOR_CONSOLE_USERS=USERS)
    with served_console(env) as console:
        yield Scene(console, submitted, declined, exhausted, waiting, registered, paused)


async def _page(browser: Browser, user: tuple[str, str]) -> AsyncIterator[Page]:
    context = await browser.new_context(
        http_credentials={"username": user[0], "password": user[1]},
        viewport={"width": 1360, "height": 900},
    )
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def operator_page(browser: Browser) -> AsyncIterator[Page]:
    async for page in _page(browser, OPERATOR):
        yield page


@pytest.fixture
async def viewer_page(browser: Browser) -> AsyncIterator[Page]:
    async for page in _page(browser, VIEWER):
        yield page


async def shot(page: Page, name: str) -> Path:
    """A full-page screenshot kept as a test artifact."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
