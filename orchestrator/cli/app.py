"""The `orchestrator` command line (typer): the root app, `--debug`, and the command groups.

Every command turns the library's exceptions into one line on stderr and a documented exit code
(see `ExitCode` in `cli.plumbing`); `--debug` adds the traceback. Query commands take `--json`
and then print one JSON document with stable field names and ISO-8601 UTC times.

A command imports what it uses inside its body: `--help` and the read-only queries start
without alembic, the HTTP client, the sandbox or the engine (tests/cli/test_startup_imports.py).
"""

from __future__ import annotations

import importlib

import typer

from orchestrator import aio
from orchestrator.cli.plumbing import ExitCode, configure_logging

__all__ = ["ExitCode", "app", "main"]  # ExitCode too: scripts and tests know it from here

# The modules under `orchestrator.cli` whose `register(app)` adds their commands, in the order
# `--help` lists them (top-level commands first, then the groups, each in this order).
COMMAND_MODULES = (
    "checkouts",
    "queries",
    "retry",
    "actions",
    "changes",
    "prune",
    "db",
    "tools",
    "recovery",
    "webhooks",
    "console",
)

app = typer.Typer(
    help="Drive Violet checkouts as persisted, crash-safe state machines.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain usage errors and help: no box drawing, even on a terminal
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
) -> None:
    """Drive Violet checkouts as persisted, crash-safe state machines."""
    configure_logging(debug)


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"orchestrator.cli.{name}").register(app)


_register_commands()


def main() -> None:
    """The `orchestrator` console script."""
    aio.tune_gc()  # the CLI owns its process (a library user keeps their own GC settings)
    app()
