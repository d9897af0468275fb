"""`orchestrator recover`, `orchestrator verify` and `orchestrator readback`, registered by
`cli.app`.

Also a program of its own, so the recovery job can be run, and killed, as its own process by the
crash tests: ``python -m orchestrator.cli.recovery recover --until-idle``.
Exit codes: 0 ok; 1 drift found (verify), or a drive raised a bug (recover --once /
--until-idle); 2 bad input; 5 cannot reach the database or Violet, Violet refused the
credentials, a database error interrupted a drive (recover --once / --until-idle), or an order
could not be read (readback). An error raised out of a command maps as for every command
(`cli.plumbing.classify`).

`readback` is a command of its own, not a mode of `recover`: it spends Violet calls on a schedule
of its own (hourly, say, from cron) within a budget per run, while `recover` runs continuously
and calls Violet only for checkouts that need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from typing import TYPE_CHECKING

import typer

from orchestrator.cli.plumbing import (
    ExitCode,
    cli_errors,
    configure_logging,
    fail,
    parse_time,
    run,
    settings,
)

if TYPE_CHECKING:  # the engine loads when a command runs, not when `orchestrator` starts
    from rich.console import Console

    from orchestrator.readback import ReadBackReport
    from orchestrator.recovery import Mode, RecoveryJob, RecoverySummary
    from orchestrator.verify import VerifyReport

_log = logging.getLogger("orchestrator.recovery")
_SUMMARY_KEYS = ("claimed", "advanced", "submitted", "failed", "reconciled", "still_due")


def register(app: typer.Typer) -> None:
    """`recover`, `verify` and `readback` at the top level."""
    app.command("recover")(recover_command)
    app.command("verify")(verify_command)
    app.command("readback")(readback_command)


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
        raise fail(ExitCode.BAD_INPUT, "choose one of --once, --until-idle, --forever")
    mode: Mode = "until-idle"
    if chosen == ["once"]:
        mode = "once"
    elif chosen == ["forever"]:
        mode = "forever"
    return mode


async def _recover(
    mode: Mode,
    *,
    concurrency: int,
    batch: int,
    db_wait: float,
    live: Console | None,
    metrics: tuple[str, int] | None = None,
) -> RecoverySummary:
    """Open the orchestrator (waiting for the database) and run the recovery job, serving
    `/metrics` on `metrics` (host, port) meanwhile if asked."""
    from orchestrator.api import Orchestrator
    from orchestrator.recovery import RecoveryJob, open_with_retry

    orch = Orchestrator(settings())
    stop = asyncio.Event()
    _install_stop(stop)
    give_up = None if mode == "forever" else db_wait
    try:
        async with contextlib.AsyncExitStack() as serving:
            if metrics is not None:
                from orchestrator.metrics.collector import process_metrics
                from orchestrator.metrics.serve import serving_metrics

                process_metrics()  # count from the start, before the first scrape
            await open_with_retry(orch, give_up_after=give_up, stop=stop)
            if metrics is not None:
                host, port = metrics
                bound = await serving.enter_async_context(serving_metrics(orch.engine, host, port))
                _log.info("metrics at http://%s:%d/metrics", host, bound)
            job = RecoveryJob(orch.worker, db_retry_timeout=give_up)
            return await _run_job(job, mode, concurrency, batch, stop, live)
    finally:
        await orch.close()


async def _run_job(
    job: RecoveryJob,
    mode: Mode,
    concurrency: int,
    batch: int,
    stop: asyncio.Event,
    live: Console | None,
) -> RecoverySummary:
    """Run the job, showing its progress on the `live` console if there is one."""
    if not live:
        return await job.run(mode, concurrency=concurrency, batch=batch, stop=stop)
    with live.status("recovering…") as status:

        def progress(summary: RecoverySummary) -> None:
            status.update(
                f"claimed {summary.claimed}  submitted {summary.submitted}  "
                f"failed {summary.failed}  waiting {summary.waiting}  "
                f"retry {summary.retry_scheduled}  errors {summary.errors}"
            )

        return await job.run(
            mode, concurrency=concurrency, batch=batch, stop=stop, progress=progress
        )


def _recover_exit(summary: RecoverySummary, mode: Mode) -> None:
    """Exit 5 when Violet refused the credentials or the database interrupted a drive, 1 when a
    drive raised; a service (`--forever`) stops only for the credentials."""
    if summary.credentials_refused:
        raise fail(
            ExitCode.UNAVAILABLE,
            f"Violet refused the credentials; {summary.credentials_refused} checkout(s) kept, "
            "not failed, and no more claimed: fix VIOLET_APP_ID, VIOLET_APP_SECRET, "
            "VIOLET_USERNAME or VIOLET_PASSWORD, then run `orchestrator recover` again",
        )
    if mode == "forever":
        return
    if summary.drive_errors:
        raise fail(
            ExitCode.DRIVE_FAILED,
            f"{summary.drive_errors} drive(s) failed (logged above with their checkout ids); "
            "those checkouts are left for the next run",
        )
    if summary.database_errors:
        raise fail(
            ExitCode.UNAVAILABLE,
            f"a database error interrupted {summary.database_errors} drive(s) (logged above with "
            "their checkout ids); those checkouts are kept, not failed, and left for the next run",
        )


@cli_errors
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
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve Prometheus metrics at http://HOST:PORT/metrics while running.",
    ),
    metrics_host: str = typer.Option(
        "127.0.0.1", "--metrics-host", help="Address the metrics listen on."
    ),
    debug: bool = typer.Option(False, "--debug", help="Log more; show tracebacks."),
) -> None:
    """Finish interrupted and retry-due checkouts; several copies may run at once."""
    from rich.console import Console

    mode = _mode(once, until_idle, forever)
    configure_logging(debug)
    console = Console(stderr=True)
    live = console if console.is_terminal and not json_output else None
    metrics = None if metrics_port is None else (metrics_host, metrics_port)
    summary = run(
        _recover(
            mode,
            concurrency=concurrency,
            batch=batch,
            db_wait=db_wait,
            live=live,
            metrics=metrics,
        )
    )
    if json_output:
        typer.echo(json.dumps({k: summary.to_json()[k] for k in _SUMMARY_KEYS}))
    else:
        typer.echo(" ".join(f"{k}={v}" for k, v in summary.to_json().items()))
    _recover_exit(summary, mode)


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


@cli_errors
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
    configure_logging(debug)
    since_at = parse_time(since) if since is not None else None

    from orchestrator.api import Orchestrator
    from orchestrator.verify import verify

    async def main() -> VerifyReport:
        async with Orchestrator(settings()) as orch:
            return await verify(
                orch.worker, since=since_at, sample=sample, check_duplicates=duplicates
            )

    report = run(main())
    if json_output:
        typer.echo(json.dumps(report.to_json(), default=str))
    else:
        _print_report(report)
    if report.drift:
        raise typer.Exit(int(ExitCode.DRIFT))
    if report.unreadable:
        raise typer.Exit(int(ExitCode.UNAVAILABLE))


@cli_errors
def readback_command(
    budget: int = typer.Option(
        100, "--budget", min=0, max=100_000, help="Most orders read from Violet in this run."
    ),
    older_than: float | None = typer.Option(
        None,
        "--older-than",
        min=0,
        help="Seconds without news before an order is read (default ORCHESTRATOR_READBACK_AFTER).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    debug: bool = typer.Option(False, "--debug", help="Log more; show tracebacks."),
) -> None:
    """Read submitted orders with no recent news from Violet and record their bags (fills the
    gaps webhooks leave); exit 5 if an order could not be read."""
    configure_logging(debug)

    from orchestrator.api import Orchestrator
    from orchestrator.readback import read_back
    from orchestrator.store import bags

    async def main() -> ReadBackReport:
        async with Orchestrator(settings()) as orch:
            after = orch.settings.readback_after if older_than is None else older_than
            async with bags.pool(orch.engine.url) as pool:
                return await read_back(orch.worker, pool, older_than=after, budget=budget)

    report = run(main())
    if json_output:
        typer.echo(json.dumps(report.to_json(), default=str))
    else:
        typer.echo(
            f"read {report.read} of {report.stale} stale orders: changed {report.changed}, "
            f"busy {report.busy}, unreadable {len(report.unreadable)}"
        )
    if report.unreadable:
        raise typer.Exit(int(ExitCode.UNAVAILABLE))


def _app() -> typer.Typer:
    """The program ``python -m orchestrator.cli.recovery``: these commands alone."""
    app = typer.Typer(
        help="Recovery, verification and read-backs (also available as `orchestrator`).",
        rich_markup_mode=None,
    )
    register(app)
    return app


if __name__ == "__main__":
    _app()()
