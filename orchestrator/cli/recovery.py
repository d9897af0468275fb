"""CLI glue for `orchestrator recover` and `orchestrator verify` (registered in `cli.app`).

Kept apart from app.py so the recovery job can be run, and killed, as its own process by the
crash tests: ``python -m orchestrator.cli.recovery recover --until-idle``.
Exit codes: 0 ok; 1 drift found (verify), or a drive raised a bug (recover --once /
--until-idle); 2 bad input; 5 cannot reach the database or Violet, Violet refused the
credentials, or a database error interrupted a drive (recover --once / --until-idle).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from orchestrator import aio
from orchestrator.errors import (
    ConfigError,
    DatabaseUnavailable,
    OrchestratorError,
    SchemaNotMigrated,
)
from orchestrator.logs import configure_cli_logging, printable
from orchestrator.sensitive import redact_text

if TYPE_CHECKING:  # the engine loads when a command runs, not when `orchestrator` starts
    from orchestrator.recovery import Mode, RecoverySummary
    from orchestrator.verify import VerifyReport

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_DRIVE_ERRORS = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 5

_T = TypeVar("_T")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_SUMMARY_KEYS = ("claimed", "advanced", "submitted", "failed", "reconciled", "still_due")


def _fail(code: int, message: str) -> NoReturn:
    typer.echo(f"error: {printable(redact_text(message))}", err=True)
    raise typer.Exit(code)


def _setup_logging(debug: bool) -> None:
    configure_cli_logging(debug)  # every handler scrubs secrets, tracebacks included


def _run(main: Callable[[], Coroutine[Any, Any, _T]], debug: bool) -> _T:
    """Run `main`, turning the library's errors into one line on stderr and an exit code."""
    try:
        return aio.run(main())
    except ConfigError as exc:
        if debug:
            raise
        _fail(EXIT_BAD_INPUT, str(exc))
    except (DatabaseUnavailable, SchemaNotMigrated) as exc:
        if debug:
            raise
        _fail(EXIT_UNREACHABLE, str(exc))
    except OrchestratorError as exc:
        if debug:
            raise
        _fail(EXIT_UNREACHABLE, str(exc))


def _install_stop(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT: stop claiming, let running drives finish, exit 0."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))


def _mode(once: bool, until_idle: bool, forever: bool) -> Mode:
    chosen = [
        name
        for name, flag in (("once", once), ("until-idle", until_idle), ("forever", forever))
        if flag
    ]
    if len(chosen) > 1:
        _fail(EXIT_BAD_INPUT, "choose one of --once, --until-idle, --forever")
    mode: Mode = "until-idle"
    if chosen == ["once"]:
        mode = "once"
    elif chosen == ["forever"]:
        mode = "forever"
    return mode


def recover_command(
    once: bool = typer.Option(False, "--once", help="Claim one batch, drive it, exit."),
    until_idle: bool = typer.Option(
        False, "--until-idle", help="Run until nothing is due soon (the default; for cron)."
    ),
    forever: bool = typer.Option(
        False, "--forever", help="Keep polling until SIGTERM/SIGINT (for a service)."
    ),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Checkouts driven at once."),
    batch: int = typer.Option(50, "--batch", min=1, help="Most checkouts claimed per claim."),
    db_wait: float = typer.Option(
        60.0, "--db-wait", min=0, help="Seconds to keep retrying an unreachable database."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print a one-line JSON summary."),
    debug: bool = typer.Option(False, "--debug", help="Log more; show tracebacks."),
) -> None:
    """Finish interrupted and retry-due checkouts; several copies may run at once."""
    from rich.console import Console

    from orchestrator.api import Orchestrator
    from orchestrator.config import load_settings
    from orchestrator.recovery import RecoveryJob, open_with_retry

    mode = _mode(once, until_idle, forever)
    _setup_logging(debug)
    console = Console(stderr=True)
    live = console.is_terminal and not json_output

    async def main() -> RecoverySummary:
        settings = load_settings()
        stop = asyncio.Event()
        _install_stop(stop)
        give_up = None if mode == "forever" else db_wait
        orch = Orchestrator(settings)
        try:
            await open_with_retry(orch, give_up_after=give_up, stop=stop)
            job = RecoveryJob(orch.worker, db_retry_timeout=give_up)
            if not live:
                return await job.run(mode, concurrency=concurrency, batch=batch, stop=stop)
            with console.status("recovering…") as status:

                def progress(summary: RecoverySummary) -> None:
                    status.update(
                        f"claimed {summary.claimed}  submitted {summary.submitted}  "
                        f"failed {summary.failed}  waiting {summary.waiting}  "
                        f"retry {summary.retry_scheduled}  errors {summary.errors}"
                    )

                return await job.run(
                    mode, concurrency=concurrency, batch=batch, stop=stop, progress=progress
                )
        finally:
            await orch.close()

    summary = _run(main, debug)
    if json_output:
        typer.echo(json.dumps({k: summary.to_json()[k] for k in _SUMMARY_KEYS}))
    else:
        data = summary.to_json()
        typer.echo(" ".join(f"{k}={v}" for k, v in data.items()))
    if summary.credentials_refused:
        _fail(
            EXIT_UNREACHABLE,
            f"Violet refused the credentials; {summary.credentials_refused} checkout(s) kept, "
            "not failed, and no more claimed: fix VIOLET_APP_ID, VIOLET_APP_SECRET, "
            "VIOLET_USERNAME or VIOLET_PASSWORD, then run `orchestrator recover` again",
        )
    if mode == "forever":
        return
    if summary.drive_errors:
        _fail(
            EXIT_DRIVE_ERRORS,
            f"{summary.drive_errors} drive(s) failed (logged above with their checkout ids); "
            "those checkouts are left for the next run",
        )
    if summary.database_errors:
        _fail(
            EXIT_UNREACHABLE,
            f"a database error interrupted {summary.database_errors} drive(s) (logged above with "
            "their checkout ids); those checkouts are kept, not failed, and left for the next run",
        )


def parse_since(value: str) -> datetime:
    """An ISO-8601 time (naive means UTC) or a relative age like 30m, 2h, 7d."""
    match = _RELATIVE.match(value.strip())
    if match:
        amount, unit = float(match.group(1)), _UNITS[match.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: amount})
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {value!r}: use an ISO-8601 time or an age like 30m, 2h, 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _print_report(report: VerifyReport) -> None:
    typer.echo(f"checked {report.checked} checkouts: drift {report.drift}")
    for d in report.disagreements:
        typer.echo(
            f"  {d.app_order_id} ({d.checkout_id}) {d.field}: local={d.local} violet={d.violet}"
        )
    for app_order_id, carts in report.duplicate_carts.items():
        typer.echo(f"  {app_order_id}: {len(carts)} carts at Violet {carts}")
    for app_order_id, orders in report.duplicate_orders.items():
        typer.echo(f"  {app_order_id}: {len(orders)} ORDERS at Violet {orders}")
    for item in report.unreadable:
        typer.echo(f"  {item['app_order_id']}: could not read from Violet ({item['error']})")


def verify_command(
    since: str | None = typer.Option(
        None, "--since", help="Only checkouts created since (ISO time or 30m/2h/7d)."
    ),
    sample: int | None = typer.Option(None, "--sample", min=1, help="A random sample of N."),
    duplicates: bool = typer.Option(
        False, "--duplicates", help="Also count app_order_ids with more than one Violet cart."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    debug: bool = typer.Option(False, "--debug", help="Log more; show tracebacks."),
) -> None:
    """Compare local checkouts with Violet's carts; exit 1 on drift, 5 if Violet was unreadable."""
    _setup_logging(debug)
    try:
        since_at = parse_since(since) if since is not None else None
    except ValueError as exc:
        _fail(EXIT_BAD_INPUT, str(exc))

    from orchestrator.api import Orchestrator
    from orchestrator.config import load_settings
    from orchestrator.verify import verify

    async def main() -> VerifyReport:
        async with Orchestrator(load_settings()) as orch:
            return await verify(
                orch.worker, since=since_at, sample=sample, check_duplicates=duplicates
            )

    report = _run(main, debug)
    if json_output:
        typer.echo(json.dumps(report.to_json(), default=str))
    else:
        _print_report(report)
    if report.drift:
        raise typer.Exit(EXIT_DRIFT)
    if report.unreadable:
        raise typer.Exit(EXIT_UNREACHABLE)


def _app() -> typer.Typer:
    app = typer.Typer(
        help="Recovery and verification (also available as `orchestrator`).",
        rich_markup_mode=None,
    )
    app.command("recover")(recover_command)
    app.command("verify")(verify_command)
    return app


if __name__ == "__main__":
    _app()()
