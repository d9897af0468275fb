"""Registers the shared fixture modules (real PostgreSQL, the local Violet sandbox).

A fixture module is listed only once its file exists, so helpers working in parallel never break
collection for each other; `tests.fixtures.db` always exists.
"""

from pathlib import Path

_FIXTURES = Path(__file__).parent / "fixtures"

pytest_plugins = [
    f"tests.fixtures.{name}"
    for name in ("db", "sandbox", "orchestrator")
    if (_FIXTURES / f"{name}.py").exists()
]
