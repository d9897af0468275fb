"""`prune`: strip the bulky parts of audit events older than the retention window.

Run by the tables' owner, with the database URL `orchestrator db upgrade` uses (the application
role is refused: exit 2, nothing changed). `--dry-run` only counts, as any role that can read.
Batches of one short transaction each: safe beside a busy shop, and a killed run is finished by
the next one (docs/operations.md, "Retention").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from orchestrator.cli.plumbing import JsonOption, cli_errors, run, settings
from orchestrator.store.schema_names import AUDIT_RETENTION_MAX_DAYS

#: The most rows one batch (one transaction) changes; `orchestrator.retention.MAX_BATCH`.
MAX_BATCH = 100_000

if TYPE_CHECKING:
    from orchestrator.config import Settings
    from orchestrator.retention import Pruned, PruneReport


def register(app: typer.Typer) -> None:
    """`prune`, at the top level."""
    app.command("prune")(prune_command)


def _resolve_url(current: Settings) -> str:
    """The configured database, or the embedded one (migrated: nobody else will)."""
    from orchestrator.store.embedded import resolve_database_url

    url = resolve_database_url(current)
    if not current.database_url:
        from orchestrator.store.schema_versions import migrate

        migrate(url)
    return url


@cli_errors
def prune_command(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Say what would be removed; change nothing."
    ),
    older_than: int | None = typer.Option(
        None,
        "--older-than",
        min=1,
        max=AUDIT_RETENTION_MAX_DAYS,
        help="Days to keep whole (default ORCHESTRATOR_AUDIT_RETENTION_DAYS, 90).",
    ),
    batch: int = typer.Option(
        1000, "--batch", min=1, max=MAX_BATCH, help="Rows per transaction (1-100000)."
    ),
    no_vacuum: bool = typer.Option(
        False, "--no-vacuum", help="Leave the tables to autovacuum (see docs/operations.md)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Strip Violet's request/response summaries, large detail values and settled webhook
    bodies older than the retention window; every event's skeleton stays."""
    from orchestrator import retention

    current = settings()
    days = current.audit_retention_days if older_than is None else older_than
    report = run(
        retention.prune(
            _resolve_url(current),
            older_than_days=days,
            batch=batch,
            dry_run=dry_run,
            vacuum=not no_vacuum,
            lock_timeout=current.db_lock_timeout,
        )
    )
    if as_json:
        from orchestrator.cli import render

        render.Output().json(report.to_json())
        return
    _show(report)


def _size(count: int) -> str:
    """Bytes as B, kB, MB or GB (powers of 1000)."""
    if abs(count) < 1000:
        return f"{count} B"
    value = float(count)
    for unit in ("kB", "MB"):
        value /= 1000
        if abs(value) < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} GB"


def _line(what: str, pruned: Pruned) -> str:
    from orchestrator.checkout import iso

    if not pruned.rows:
        return f"{what}: none"
    return (
        f"{what}: {pruned.rows} (~{_size(pruned.bytes)}), "
        f"from {iso(pruned.oldest)} to {iso(pruned.newest)}"
    )


def _show(report: PruneReport) -> None:
    from orchestrator.checkout import iso

    verb = "would prune" if report.dry_run else "pruned"
    typer.echo(
        f"{verb} what is older than {report.older_than_days} days (before {iso(report.cutoff)}):"
    )
    typer.echo("  " + _line("events (bodies, large detail values)", report.events))
    typer.echo("  " + _line("settled webhook events (bodies)", report.inbox))
    if report.dry_run:
        typer.echo("dry run: nothing changed")
    else:
        vacuumed = f"; vacuumed {', '.join(report.vacuumed)}" if report.vacuumed else ""
        typer.echo(f"{report.batches} batches{vacuumed}; every event's skeleton is kept")
