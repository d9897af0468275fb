"""Registers the shared fixture modules (real PostgreSQL, the local Violet sandbox).

A fixture module is listed only once its file exists, so helpers working in parallel never break
collection for each other; `tests.fixtures.db` always exists.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import sensitive

_FIXTURES = Path(__file__).parent / "fixtures"

pytest_plugins = [
    f"tests.fixtures.{name}"
    for name in ("db", "sandbox", "orchestrator")
    if (_FIXTURES / f"{name}.py").exists()
]


@pytest.fixture(autouse=True)
def _credentials_stay_in_their_test() -> Iterator[None]:
    """Configured credentials are masked process-wide (orchestrator.sensitive): a test's own
    credentials must not mask text in the tests after it."""
    with sensitive.credentials_scope():
        yield
