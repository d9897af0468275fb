"""The `orchestrator` command line (typer): the only place that reads the environment.

Every command turns the library's exceptions into one line on stderr and a documented exit code
(see `ExitCode`); `--debug` adds the traceback. Query commands take `--json` and then print one
JSON document with stable field names and ISO-8601 UTC times.

A command imports what it uses inside its body: `--help` and the read-only queries start
without alembic, the HTTP client, the sandbox or the engine (tests/cli/test_startup_imports.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib.util
import logging
import os
import re
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer

from orchestrator import aio, logs
from orchestrator.cli import documents
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
    from sqlalchemy.ext.asyncio import AsyncEngine

    from orchestrator import audit
    from orchestrator.checkout import Checkout
    from orchestrator.config import Settings
    from orchestrator.request import CheckoutRequest

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class ExitCode(IntEnum):
    """What a script calling the CLI can rely on."""

    OK = 0
    CHECKOUT_FAILED = 1
    BAD_INPUT = 2
    BUSY = 3
    NOT_FOUND = 4
    UNAVAILABLE = 5


app = typer.Typer(
    help="Drive Violet checkouts as persisted, crash-safe state machines.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain usage errors and help: no box drawing, even on a terminal
    pretty_exceptions_enable=False,
    add_completion=False,
)
checkout_app = typer.Typer(
    help="Start, drive, cancel and resume checkouts.", no_args_is_help=True, rich_markup_mode=None
)
db_app = typer.Typer(
    help="The orchestrator's database schema (alembic).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
sandbox_app = typer.Typer(
    help="The built-in local Violet sandbox.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(checkout_app, name="checkout")
app.add_typer(db_app, name="db")
app.add_typer(sandbox_app, name="sandbox")

_debug = False

JsonOption = typer.Option(False, "--json", help="Print one JSON document instead of text.")


# -- plumbing ---------------------------------------------------------------------------------


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
) -> None:
    """Drive Violet checkouts as persisted, crash-safe state machines."""
    global _debug
    _debug = debug
    logs.configure_cli_logging(debug)  # every handler scrubs secrets, tracebacks included


def _loaded(module: str, name: str) -> tuple[type[BaseException], ...]:
    """The exception class `module.name` if that module is imported, else none: an exception of
    a class never imported cannot have been raised, so classifying one imports nothing."""
    found = sys.modules.get(module)
    return (getattr(found, name),) if found is not None else ()


def _database() -> ModuleType:
    from orchestrator.store import database

    return database


def _classify(exc: BaseException) -> tuple[ExitCode, str]:
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
    if _database().is_database_error(exc):
        # The driver's first line only: statement parameters are never echoed.
        return ExitCode.UNAVAILABLE, f"database: {_database().error_reason(exc)}"
    if isinstance(exc, OrchestratorError):
        return ExitCode.CHECKOUT_FAILED, str(exc)
    return ExitCode.CHECKOUT_FAILED, f"unexpected {type(exc).__name__}: {exc} (rerun with --debug)"


def _fail(code: ExitCode, message: str) -> typer.Exit:
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
            code, message = _classify(exc)
            raise _fail(code, message) from None

    return wrapper


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return aio.run(coro)


def _settings(**overrides: Any) -> Settings:
    from orchestrator.config import load_settings

    return load_settings(**overrides)


def _resolve_url(settings: Settings) -> str:
    """The configured database, or the embedded one (migrated: nobody else will)."""
    from orchestrator.store import database

    url = database.resolve_database_url(settings)
    if not settings.database_url:
        database.migrate(url)
    return url


@asynccontextmanager
async def _engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on a schema at head, for commands that only read (no Violet credentials)."""
    from orchestrator.store import database

    url = await asyncio.to_thread(_resolve_url, settings)
    engine = database.create_engine(url, pool_size=2)
    try:
        await database.check_schema(engine)
        yield engine
    finally:
        await engine.dispose()


def _read_request(path: Path, settings: Settings) -> CheckoutRequest:
    """A checkout request from a JSON file or stdin (`-`); InvalidRequest names the source or
    the bad field."""
    from orchestrator.request import CheckoutRequest

    return CheckoutRequest.parse(documents.read_json_object(path, limit=settings.max_request_bytes))


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, *, option: str = "--since") -> datetime:
    """ISO-8601 (naive means UTC), a date, or an age like `90m`, `2h`, `7d`."""
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


def _print_checkout(checkout: Checkout, as_json: bool, *, show_secret: bool = False) -> None:
    from orchestrator.cli import render

    out = render.Output()
    handout = checkout.handout
    if as_json:
        document = checkout.to_json()
        if handout:
            shown = (
                dict(handout)
                if show_secret
                else {k: v for k, v in handout.items() if k != "payment_intent_client_secret"}
            )
            document["handout"] = shown
        out.json(document)
    else:
        render.show_checkout(out, checkout)
        secret = handout.get("payment_intent_client_secret")
        if secret and show_secret:
            out.line(f"client_secret: {secret}")
            out.line(f"stripe_key:    {handout.get('stripe_key', '')}")
    if handout.get("payment_intent_client_secret") and not show_secret:
        typer.echo(
            "note: a payment intent client secret is ready for the shopper's front end; "
            "it is never stored or shown unless you pass --show-secret",
            err=True,
        )


def _checkout_exit(checkout: Checkout) -> None:
    """Exit 1 for a failed checkout, 3 when the send gate held a request back (the worker, not
    Violet, was in doubt), 5 when Violet could not be reached or refused our credentials (the
    row stays due)."""
    from orchestrator import states  # no `transitions` import on this path
    from orchestrator.cli import render

    if checkout.state == states.FAILED:
        raise typer.Exit(int(ExitCode.CHECKOUT_FAILED))
    error = checkout.last_error or {}
    if checkout.credentials_refused:
        typer.echo(
            f"error: Violet refused the credentials ({error.get('message')}); the checkout is "
            f"kept, not failed, and is due again at {render.when(checkout.next_attempt_at)}: fix "
            "VIOLET_APP_ID, VIOLET_APP_SECRET, VIOLET_USERNAME or VIOLET_PASSWORD, then run "
            "`orchestrator recover`",
            err=True,
        )
        raise typer.Exit(int(ExitCode.UNAVAILABLE))
    if not checkout.is_terminal and error.get("type") == "VioletSendRefused":  # as recorded
        typer.echo(
            f"error: the {error.get('step')} request was not sent (this worker was too late for "
            "it or unsure of its lease; Violet was not asked); the checkout is kept and left to "
            f"`orchestrator recover` to reconcile, due at {render.when(checkout.next_attempt_at)}",
            err=True,
        )
        raise typer.Exit(int(ExitCode.BUSY))
    unreachable = error.get("class") in ("retryable", "outcome_unknown") and not error.get("status")
    if not checkout.is_terminal and not checkout.is_waiting and unreachable:
        typer.echo(
            f"error: Violet could not be reached ({error.get('type')}); the checkout is saved "
            f"and will be retried at {render.when(checkout.next_attempt_at)} "
            "by `orchestrator recover` or `orchestrator checkout run`",
            err=True,
        )
        raise typer.Exit(int(ExitCode.UNAVAILABLE))


async def _with_orchestrator(
    action: Callable[[Any], Coroutine[Any, Any, Checkout]],
) -> Checkout:
    from orchestrator.api import Orchestrator

    async with Orchestrator(_settings()) as orch:
        return await action(orch)


# -- checkout ---------------------------------------------------------------------------------


@checkout_app.command("start")
@cli_errors
def checkout_start(
    file: Path = typer.Argument(
        ..., help="A JSON checkout request (see docs/cli.md); - reads it from stdin."
    ),
    no_run: bool = typer.Option(False, "--no-run", help="Only register it (due now)."),
    as_json: bool = JsonOption,
    show_secret: bool = typer.Option(
        False, "--show-secret", help="Print the payment intent client secret (intent payments)."
    ),
) -> None:
    """Register a checkout from FILE and drive it as far as it can go now."""
    request = _read_request(file, _settings())
    if no_run and request.payment.type == "card":
        typer.echo(
            "note: card data is never stored; a card checkout registered with --no-run will wait "
            "in awaiting_payment for the card to be given again (`orchestrator checkout pay`)",
            err=True,
        )
    checkout = _run(_with_orchestrator(lambda orch: orch.start(request, run=not no_run)))
    _print_checkout(checkout, as_json, show_secret=show_secret)
    _checkout_exit(checkout)


@checkout_app.command("run")
@cli_errors
def checkout_run(
    ref: str = typer.Argument(..., help="Checkout id, app_order_id or Violet order id."),
    wait: float = typer.Option(
        0.0, "--wait", min=0, help="Wait up to this many seconds for retries that fall due."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Drive a checkout as far as it can go now (retries due later are left scheduled)."""
    checkout = _run(_with_orchestrator(lambda orch: orch.run(ref, retry_wait=wait)))
    _print_checkout(checkout, as_json)
    _checkout_exit(checkout)


@checkout_app.command("cancel")
@cli_errors
def checkout_cancel(
    ref: str = typer.Argument(..., help="Checkout id, app_order_id or Violet order id."),
    as_json: bool = JsonOption,
) -> None:
    """Cancel a non-terminal checkout and release its Violet cart."""
    checkout = _run(_with_orchestrator(lambda orch: orch.cancel(ref)))
    _print_checkout(checkout, as_json)


@checkout_app.command("confirm-payment")
@cli_errors
def checkout_confirm_payment(
    ref: str = typer.Argument(..., help="Checkout id, app_order_id or Violet order id."),
    as_json: bool = JsonOption,
) -> None:
    """The shopper confirmed (payment intent or 3-D Secure): price and submit, at most once."""
    checkout = _run(_with_orchestrator(lambda orch: orch.confirm_payment(ref)))
    _print_checkout(checkout, as_json)
    _checkout_exit(checkout)


_CARD_ON_ARGV = InvalidRequest(
    [
        (
            "command line",
            "card data is read from a file or stdin (--card FILE or --card -), never from the "
            "command line (not shown here: it may be card data)",
        )
    ]
)


@checkout_app.command(
    "pay", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
@cli_errors
def checkout_pay(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Checkout id, app_order_id or Violet order id."),
    card: str = typer.Option(
        ...,
        "--card",
        help="A JSON file holding the card, as the request's card payment; - reads it from "
        "stdin. Never the card itself: argv is visible to every user of the machine.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Give the card again to a checkout waiting in awaiting_payment, and drive it on."""
    from orchestrator.request import CardPaymentRequest, contains_card_number

    # Extra arguments, an unknown option or inline JSON may be card data: refused, not echoed.
    if ctx.args or card.lstrip().startswith("{") or contains_card_number(card):
        raise _CARD_ON_ARGV
    settings = _settings()
    data = documents.read_json_object(card, limit=settings.max_request_bytes)
    data.setdefault("type", "card")
    payment = CardPaymentRequest.parse(data)
    checkout = _run(_with_orchestrator(lambda orch: orch.provide_payment(ref, payment)))
    _print_checkout(checkout, as_json)
    _checkout_exit(checkout)


# -- queries ----------------------------------------------------------------------------------


@app.command()
@cli_errors
def status(
    ref: str = typer.Argument(..., help="Checkout id, app_order_id or Violet order id."),
    as_json: bool = JsonOption,
) -> None:
    """One checkout: state, Violet ids, totals, bags, pending step, next attempt, last error."""
    from orchestrator import audit
    from orchestrator.cli import render

    async def query() -> Checkout:
        async with _engine(_settings()) as engine:
            return await audit.find_checkout(engine, ref)

    checkout = _run(query())
    out = render.Output()
    if as_json:
        out.json(checkout.to_json())
    else:
        render.show_checkout(out, checkout)


@app.command("audit")
@cli_errors
def audit_command(
    ref: str = typer.Argument(..., help="Checkout id, app_order_id or Violet order id."),
    as_json: bool = JsonOption,
) -> None:
    """A checkout's full history: every step, Violet call, transition, error and takeover."""
    from orchestrator import audit
    from orchestrator.cli import render

    async def query() -> tuple[Checkout, list[Any]]:
        async with _engine(_settings()) as engine:
            checkout = await audit.find_checkout(engine, ref)
            return checkout, await audit.timeline(engine, checkout.id)

    checkout, events = _run(query())
    out = render.Output()
    if as_json:
        out.json({"checkout": checkout.to_json(), "events": [e.to_json() for e in events]})
        return
    title = f"{checkout.app_order_id} ({checkout.id}) — {checkout.state}"
    render.show_timeline(out, events, title=title)


@app.command("list")
@cli_errors
def list_command(
    state: str | None = typer.Option(None, "--state", help="Only checkouts in this state."),
    since: str | None = typer.Option(
        None, "--since", help="Created at or after: ISO-8601 time or an age (2h, 7d)."
    ),
    until: str | None = typer.Option(None, "--until", help="Created before (same format)."),
    error_type: str | None = typer.Option(
        None, "--error-type", help="Last error of this type (e.g. card_declined)."
    ),
    failed: bool = typer.Option(False, "--failed", help="Only failed checkouts."),
    limit: int = typer.Option(50, "--limit", help="At most this many (newest first)."),
    as_json: bool = JsonOption,
) -> None:
    """Checkouts, newest first."""
    from orchestrator import audit
    from orchestrator.cli import render

    since_at = parse_time(since) if since else None
    until_at = parse_time(until, option="--until") if until else None

    async def query() -> list[Checkout]:
        async with _engine(_settings()) as engine:
            return await audit.list_checkouts(
                engine,
                state=state,
                since=since_at,
                until=until_at,
                error_type=error_type,
                failed=failed,
                limit=limit,
            )

    checkouts = _run(query())
    out = render.Output()
    if as_json:
        out.json({"count": len(checkouts), "checkouts": [c.to_json() for c in checkouts]})
    else:
        render.show_list(out, checkouts)


@app.command("stats")
@cli_errors
def stats_command(
    as_json: bool = JsonOption,
    exact: bool = typer.Option(
        False, "--exact", help="Count finished checkouts exactly (slow on millions of rows)."
    ),
) -> None:
    """Counts per state, due now, waiting for input, oldest unfinished checkout."""
    from orchestrator import audit
    from orchestrator.cli import render

    async def query() -> audit.Stats:
        async with _engine(_settings()) as engine:
            return await audit.stats(engine, exact=exact)

    result = _run(query())
    out = render.Output()
    if as_json:
        out.json(result.to_json())
        return
    out.table(
        ("state", "checkouts"),
        [
            [state, f"~{count}" if state in result.estimated else str(count)]
            for state, count in result.by_state.items()
        ],
    )
    oldest = result.oldest_non_terminal
    oldest_line = "-"
    if oldest is not None:
        oldest_line = (
            f"{oldest.app_order_id} ({oldest.state}) since {render.when(oldest.created_at)}"
        )
    out.fields(
        [
            ("total", str(result.total)),
            ("due now", str(result.due_now)),
            ("waiting for input", str(result.waiting_for_input)),
            ("leased (in progress)", str(result.leased)),
            ("oldest unfinished", oldest_line),
        ]
    )


# -- database ---------------------------------------------------------------------------------


@db_app.command("upgrade")
@cli_errors
def db_upgrade(
    revision: str = typer.Option("head", "--revision", help="Target revision."),
) -> None:
    """Apply the orchestrator's migrations (idempotent; safe from several hosts at once)."""
    from orchestrator.store import database

    settings = _settings()
    url = database.resolve_database_url(settings)
    database.migrate(url, revision)
    typer.echo(f"{database.describe_url(url)} at revision {database.current_revision(url) or '-'}")


@db_app.command("current")
@cli_errors
def db_current(as_json: bool = JsonOption) -> None:
    """The database's schema revision and the one this code needs."""
    import sqlalchemy.exc

    from orchestrator.cli import render
    from orchestrator.store import database

    settings = _settings()
    url = database.resolve_database_url(settings)
    try:
        current = database.current_revision(url)
    except sqlalchemy.exc.OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise DatabaseUnavailable(
            f"cannot connect to the database at {database.describe_url(url)}: {reason}"
        ) from None
    head = database.head_revision()
    document = {
        "database": database.describe_url(url),
        "current": current,
        "head": head,
        "up_to_date": current == head,
    }
    if as_json:
        render.Output().json(document)
        return
    note = "up to date" if current == head else "run `orchestrator db upgrade`"
    typer.echo(f"{document['database']}: revision {current or 'none'} (head {head}; {note})")


def _sql_name(check: str) -> Callable[[str], str]:
    """A typer callback running `grants.<check>`: the name as given, or a usage error (exit 2)
    saying why not."""

    def callback(value: str) -> str:
        from orchestrator.store import grants

        try:
            getattr(grants, check)(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        return value

    return callback


@db_app.command("grants")
@cli_errors
def db_grants(
    role: str = typer.Option(
        ..., "--role", help="The application's role.", callback=_sql_name("check_role_name")
    ),
    schema: str = typer.Option(
        "public", "--schema", help="Where the tables are.", callback=_sql_name("quote_ident")
    ),
    existing_role: bool = typer.Option(
        False, "--existing-role", help="The role exists: print no CREATE ROLE."
    ),
) -> None:
    """Print the SQL that makes the least-privilege role the application and `recover` run as.

    Nothing is sent to the database: run the script as the tables' owner (docs/operations.md).
    """
    from orchestrator.store import grants

    typer.echo(grants.grants_script(role, schema=schema, create_role=not existing_role), nl=False)


# -- sandbox, diagram, config -----------------------------------------------------------------


@sandbox_app.command("serve")
@cli_errors
def sandbox_serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8040, "--port", min=0, max=65535, help="0 picks a free port."),
    latency_ms: float = typer.Option(0.0, "--latency-ms", min=0, help="Added to every call."),
    first_cart_id: int | None = typer.Option(
        None,
        "--first-cart-id",
        min=1,
        help="The first cart id handed out (default 80000). In front of a database that keeps an "
        "earlier sandbox's checkouts, start above its max(violet_order_id): ids are unique there.",
    ),
    allow_remote_control: bool = typer.Option(
        False,
        "--allow-remote-control",
        help="On a --host other hosts can reach, serve the unauthenticated /_sandbox control "
        "surface too (left out by default).",
    ),
) -> None:
    """Serve the local Violet sandbox over HTTP until interrupted (Ctrl-C)."""
    from orchestrator.sandbox import SandboxConfig, serve

    typer.echo(
        "point the orchestrator at it with VIOLET_BASE_URL=http://HOST:PORT/v1 and the sandbox "
        "credentials (docs/cli.md)",
        err=True,
    )
    config = SandboxConfig(latency_ms=latency_ms)
    if first_cart_id is not None:
        config = dataclasses.replace(config, first_cart_id=first_cart_id)
    serve(host, port, config, allow_remote_control=allow_remote_control)


@app.command()
@cli_errors
def diagram(
    fmt: str = typer.Option("mermaid", "--format", help="mermaid (no dependencies) or svg."),
) -> None:
    """The checkout state graph, drawn from the state machine itself."""
    from orchestrator.engine import machine

    if fmt == "mermaid":
        typer.echo(machine.mermaid())
        return
    if fmt != "svg":
        raise InvalidRequest([("--format", "must be mermaid or svg")])
    try:
        if importlib.util.find_spec("pygraphviz") is None:
            # transitions would quietly fall back to mermaid text in an .svg file
            raise ImportError("pygraphviz is not installed")
        svg = machine.svg()
    except (ImportError, OSError) as exc:
        raise _fail(
            ExitCode.BAD_INPUT,
            f"svg needs graphviz and pygraphviz ({exc}); use --format mermaid, "
            "or `pip install pygraphviz` with the graphviz system library",
        ) from None
    sys.stdout.write(svg)


@app.command()
@cli_errors
def config() -> None:
    """Print the effective settings (secrets masked)."""
    settings = _settings()
    for name, value in settings.public_values().items():
        typer.echo(f"{name} = {value}")


@app.command()
@cli_errors
def demo(as_json: bool = JsonOption) -> None:
    """The whole flow on this machine, offline: checkouts, a crash and its recovery, timelines."""
    from orchestrator.cli import demo as demo_module
    from orchestrator.cli import render

    settings = _settings()
    out = render.Output()
    progress = (lambda line: None) if as_json else out.line
    result = _run(demo_module.run_demo(settings, progress=progress))
    if as_json:
        out.json(result.to_json())
    else:
        demo_module.show(out, result)
    if not result.ok:
        raise _fail(ExitCode.CHECKOUT_FAILED, "the demo did not go as expected (see above)")


def _register_recovery_commands() -> None:
    """`recover` and `verify` live in their own module, written alongside this one."""
    import importlib

    try:
        cli_recovery = importlib.import_module("orchestrator.cli.recovery")
    except ImportError:
        return
    for name in ("recover", "verify"):
        command = getattr(cli_recovery, f"{name}_command", None)
        if command is not None:
            app.command(name)(cli_errors(command))


_register_recovery_commands()


def main() -> None:
    aio.tune_gc()  # the CLI owns its process (a library user keeps their own GC settings)
    app()
