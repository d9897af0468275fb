"""A command imports what it uses: `--help` and the read-only queries start without alembic, the
HTTP client, the sandbox or the engine, which together cost a CLI start most of a second; the
read-only queries also start without SQLAlchemy and the schema's metadata (a plain psycopg
connection), another ~0.5 s of CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cli.conftest import clean_environment

# Run as a fresh process: the test session itself has imported everything already.
_PROBE = """
import json, sys
sys.argv = ["orchestrator", *sys.argv[1:]]
from orchestrator.cli.app import main
try:
    main()
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""

_NEVER_AT_START = (
    "alembic",
    "httpx",
    "orchestrator.sandbox",
    "orchestrator.api",
    "uvicorn",
    "prometheus_client",
    "opentelemetry",
)
# Not for the read-only queries either (`orchestrator.store.schema` is SQLAlchemy metadata).
_NOT_FOR_QUERIES = (*_NEVER_AT_START, "sqlalchemy", "orchestrator.store.schema")
# typer itself imports pydantic for a subcommand's help: not ours to keep out.
_NOT_FOR_HELP = (
    *_NEVER_AT_START,
    "sqlalchemy",
    "psycopg",
    "pydantic_settings",
    "rich",
    "transitions",
    "starlette",
    "jinja2",
    "orchestrator.console",
)


def _imported(*args: str, env: dict[str, str]) -> set[str]:
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    line = next(x for x in completed.stderr.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def _loaded(modules: set[str], roots: tuple[str, ...]) -> list[str]:
    """The modules that are one of `roots` or inside one (`a.b` is not inside `a.bc`)."""
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


@pytest.mark.parametrize(
    "args", [["--help"], ["checkout", "--help"], ["db", "--help"], ["console", "--help"]]
)
def test_help_imports_no_database_http_or_sandbox_code(args: list[str]) -> None:
    modules = _imported(*args, env=clean_environment())
    assert "orchestrator.cli.app" in modules
    assert _loaded(modules, _NOT_FOR_HELP) == []


def test_status_imports_neither_alembic_nor_the_http_client(database_url: str) -> None:
    modules = _imported(
        "status", "nobody", env=clean_environment(ORCHESTRATOR_DATABASE_URL=database_url)
    )
    assert "orchestrator.audit" in modules  # the query did run
    assert _loaded(modules, _NEVER_AT_START) == []


@pytest.mark.parametrize("args", [["status", "nobody"], ["stats"], ["stats", "--json"]])
def test_read_only_queries_import_no_sqlalchemy(args: list[str], database_url: str) -> None:
    modules = _imported(*args, env=clean_environment(ORCHESTRATOR_DATABASE_URL=database_url))
    assert "orchestrator.audit" in modules  # the query did run
    assert "psycopg" in modules  # on a plain psycopg connection
    assert _loaded(modules, _NOT_FOR_QUERIES) == []
