"""`orchestrator retry`: reopen failed checkouts whose failure was operational; Violet read first.

One checkout (`retry REF`) is reopened at the step that failed and driven now (`--no-run`: left
due for the recovery job); its exit code says what became of it, as `checkout run`'s does. A
filter (`--all-failed`, `--error-type`, `--since`, `--until`) retries every failed checkout it
selects, each left due now for the recovery job; `--dry-run` lists what it would retry and what
it would refuse, and changes nothing. A refused retry (Violet's final word, such as a declined
card; a checkout not failed) exits 2 and says why.
"""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

import typer

from orchestrator.cli.outcome import checkout_exit, print_checkout
from orchestrator.cli.plumbing import JsonOption, cli_errors, parse_time, run, settings
from orchestrator.errors import InvalidRequest

if TYPE_CHECKING:
    from datetime import datetime

    from orchestrator.checkout import Checkout, RetryReport

#: How many failed checkouts one filtered retry takes at most, unless --limit says.
DEFAULT_LIMIT = 100


def register(app: typer.Typer) -> None:
    """`retry`, at the top level."""
    app.command("retry")(retry_command)


def default_actor() -> str:
    """`cli:<the operating system user>`: who retried, when --actor does not say."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container, say)
        return "cli"


@cli_errors
def retry_command(
    ref: str | None = typer.Argument(
        None, help="Checkout id, app_order_id or Violet order id (or give a filter instead)."
    ),
    reason: str | None = typer.Option(
        None, "--reason", help="Why (recorded in the audit trail; at most 500 characters)."
    ),
    actor: str | None = typer.Option(
        None, "--actor", help="Who retries (recorded); default cli:<your user name>."
    ),
    no_run: bool = typer.Option(
        False, "--no-run", help="REF only: reopen it, due now, and leave it to recovery."
    ),
    all_failed: bool = typer.Option(
        False, "--all-failed", help="Every failed checkout (newest first, up to --limit)."
    ),
    error_type: str | None = typer.Option(
        None, "--error-type", help="Failed checkouts whose last error has this type."
    ),
    since: str | None = typer.Option(
        None, "--since", help="Created at or after: ISO-8601 time or an age (2h, 7d)."
    ),
    until: str | None = typer.Option(None, "--until", help="Created before (same format)."),
    limit: int | None = typer.Option(
        None, "--limit", help=f"At most this many (newest first; default {DEFAULT_LIMIT})."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="With a filter: list what would be retried; change nothing."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Retry failed checkouts: reopen at the failed step, read Violet before redoing anything."""
    bulk = all_failed or error_type is not None or since is not None or until is not None
    _check_form(ref, bulk=bulk, no_run=no_run, limit=limit, dry_run=dry_run)
    who = actor if actor is not None else default_actor()
    if ref is not None:
        checkout = run(_retry_one(ref, actor=who, reason=reason, run_now=not no_run))
        print_checkout(checkout, as_json)
        checkout_exit(checkout)
        return
    since_at = parse_time(since) if since else None
    until_at = parse_time(until, option="--until") if until else None
    report = run(
        _retry_many(
            error_type=error_type,
            since=since_at,
            until=until_at,
            limit=DEFAULT_LIMIT if limit is None else limit,
            dry_run=dry_run,
            actor=who,
            reason=reason,
        )
    )
    _show_report(report, as_json)


def _check_form(
    ref: str | None, *, bulk: bool, no_run: bool, limit: int | None, dry_run: bool
) -> None:
    """Exactly one of REF or a filter, and only the options that go with it (exit 2)."""
    if ref is not None and bulk:
        raise InvalidRequest([("REF", "give a checkout or a filter, not both")])
    if ref is None and not bulk:
        raise InvalidRequest(
            [("REF", "give a checkout, or a filter: --all-failed, --error-type, --since, --until")]
        )
    if ref is not None and (dry_run or limit is not None):
        raise InvalidRequest([("--dry-run/--limit", "go with a filter, not with REF")])
    if bulk and no_run:
        raise InvalidRequest(
            [("--no-run", "goes with REF: a filtered retry leaves every checkout to recovery")]
        )


async def _retry_one(ref: str, *, actor: str, reason: str | None, run_now: bool) -> Checkout:
    from orchestrator.api import Orchestrator

    async with Orchestrator(settings()) as orch:
        return await orch.retry(ref, actor=actor, reason=reason, run=run_now)


async def _retry_many(
    *,
    error_type: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    dry_run: bool,
    actor: str,
    reason: str | None,
) -> RetryReport:
    from orchestrator.api import Orchestrator

    async with Orchestrator(settings()) as orch:
        return await orch.retry_many(
            error_type=error_type,
            since=since,
            until=until,
            limit=limit,
            dry_run=dry_run,
            actor=actor,
            reason=reason,
        )


def _show_report(report: RetryReport, as_json: bool) -> None:
    from orchestrator.cli import render

    out = render.Output()
    if as_json:
        out.json(report.to_json())
        return
    done = "would retry" if report.dry_run else "retried"
    out.table(
        ("checkout", "app_order_id", "error", "reopens in", "step"),
        [
            [str(c.id), c.app_order_id, str(c.error_type), str(c.failed_in), str(c.step)]
            for c in report.retried
        ],
        title=f"{done}: {len(report.retried)}",
    )
    if report.refused:
        out.line()
        out.table(
            ("checkout", "app_order_id", "error", "refused because"),
            [
                [str(c.id), c.app_order_id, str(c.error_type), str(c.refused)]
                for c in report.refused
            ],
            title=f"{'would refuse' if report.dry_run else 'refused'}: {len(report.refused)}",
        )
    if report.dry_run:
        out.line("dry run: nothing was changed")
    elif report.retried:
        out.line("reopened, due now: `orchestrator recover` drives them (Violet is read first)")
