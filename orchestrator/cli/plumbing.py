"""What every command shares: exit codes, the one error mapping, logging, settings, time parsing.

A command module imports this and nothing of its siblings; `cli.app` assembles the commands.
Kept light: `--help` imports it, so it names the heavy modules only inside functions.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import traceback
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer

from orchestrator import aio, logs
from orchestrator.errors import (
    CheckoutBusy,
    CheckoutConflict,
    CheckoutNotFound,
    ConfigError,
    DatabaseUnavailable,
    IllegalTransition,
    InvalidRequest,
    LeaseLost,
    OrchestratorError,
    SchemaNotMigrated,
    VioletError,
)
from orchestrator.sensitive import redact_text

if TYPE_CHECKING:
    from orchestrator.config import Settings

P = ParamSpec("P")
T = TypeVar("T")


class ExitCode(IntEnum):
    """What a script calling the CLI can rely on."""

    OK = 0
    CHECKOUT_FAILED = 1
    DRIFT = 1  # `verify`: local checkouts and Violet disagree
    DRIVE_FAILED = 1  # `recover`: a drive raised; its checkout is left for the next run
    BAD_INPUT = 2
    BUSY = 3
    NOT_FOUND = 4
    UNAVAILABLE = 5


JsonOption = typer.Option(False, "--json", help="Print one JSON document instead of text.")


_debug = False


def configure_logging(debug: bool) -> None:
    """WARNING to stderr (DEBUG with `--debug`, which also shows tracebacks); every handler
    scrubs secrets, tracebacks included. Every command path calls it before it can fail, so one
    invocation's `--debug` never carries over to the next in the same process (tests)."""
    global _debug
    _debug = debug
    logs.configure_cli_logging(debug)


def _loaded(module: str, name: str) -> tuple[type[BaseException], ...]:
    """The exception class `module.name` if that module is imported, else none: an exception of
    a class never imported cannot have been raised, so classifying one imports nothing."""
    found = sys.modules.get(module)
    return (getattr(found, name),) if found is not None else ()


def classify(exc: BaseException) -> tuple[ExitCode, str]:
    """The exit code and the one line a user sees for an exception."""
    if isinstance(exc, InvalidRequest | ConfigError | IllegalTransition | CheckoutConflict):
        return ExitCode.BAD_INPUT, str(exc)
    if isinstance(exc, _loaded("alembic.util", "CommandError")):  # e.g. db upgrade --revision bogus
        return ExitCode.BAD_INPUT, f"migrations: {exc}"
    if isinstance(exc, CheckoutBusy | LeaseLost):
        return ExitCode.BUSY, f"{exc} (try again shortly)"
    if isinstance(exc, CheckoutNotFound):
        return ExitCode.NOT_FOUND, str(exc)
    if isinstance(exc, DatabaseUnavailable | SchemaNotMigrated):
        return ExitCode.UNAVAILABLE, str(exc)
    if isinstance(exc, VioletError):
        return ExitCode.UNAVAILABLE, f"Violet: {exc}"
    from orchestrator.store import database  # only now: most errors are classified without it

    if database.is_database_error(exc):
        # The driver's first line only: statement parameters are never echoed.
        return ExitCode.UNAVAILABLE, f"database: {database.error_reason(exc)}"
    if isinstance(exc, OrchestratorError):
        return ExitCode.CHECKOUT_FAILED, str(exc)
    return ExitCode.CHECKOUT_FAILED, f"unexpected {type(exc).__name__}: {exc} (rerun with --debug)"


def fail(code: ExitCode, message: str) -> typer.Exit:
    """Print `message` as the command's one error line; raise the returned exit."""
    # The message may quote Violet or the database: no secret, no terminal control codes.
    typer.echo(f"error: {logs.printable(redact_text(message))}", err=True)
    return typer.Exit(int(code))


def cli_errors(func: Callable[P, T]) -> Callable[P, T]:
    """Run a command, mapping exceptions to one stderr line and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader left (`| head`): not an error. Keep the exit-time flush from failing.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except Exception as exc:
            if _debug:
                sys.stderr.write(logs.printable(redact_text(traceback.format_exc())))
            code, message = classify(exc)
            raise fail(code, message) from None

    return wrapper


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine on the CLI's event loop."""
    return aio.run(coro)


def settings(**overrides: Any) -> Settings:
    """The settings from the environment: only the CLI reads it."""
    from orchestrator.config import load_settings

    return load_settings(**overrides)


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, *, option: str = "--since") -> datetime:
    """ISO-8601 (naive means UTC), a date, or an age like `90m`, `2h`, `7d`, `2w`; InvalidRequest
    (a ValueError) names `option` otherwise."""
    match = _RELATIVE.match(value.strip())
    if match:
        amount, unit = float(match.group(1)), _UNITS[match.group(2)]
        try:
            return datetime.now(UTC) - timedelta(**{unit: amount})
        except (OverflowError, ValueError):
            raise InvalidRequest([(option, f"{value} reaches before year 1")]) from None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            [(option, "expected ISO-8601 (2024-05-01T12:00:00Z), a date, or an age like 2h")]
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
