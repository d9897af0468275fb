"""`status`, `audit`, `list` and `stats`: read-only questions about the checkouts.

They read the database and nothing else: no Violet credentials, no engine, no HTTP client, and
no SQLAlchemy (a plain psycopg connection; tests/cli/test_startup_imports.py keeps them so).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import typer

from orchestrator.cli.plumbing import JsonOption, cli_errors, parse_time, run, settings

if TYPE_CHECKING:
    from orchestrator import audit
    from orchestrator.checkout import Checkout
    from orchestrator.cli.render import Output
    from orchestrator.config import Settings
    from orchestrator.store.budgets import Budget
    from orchestrator.store.query_runner import QueryRunner

RefArgument = typer.Argument(..., help="Checkout id, app_order_id or Violet order id.")


def register(app: typer.Typer) -> None:
    """The queries, at the top level."""
    app.command()(status)
    app.command("audit")(audit_command)
    app.command("list")(list_command)
    app.command("stats")(stats_command)


def _resolve_url(current: Settings) -> str:
    """The configured database, or the embedded one (migrated: nobody else will)."""
    from orchestrator.store.embedded import resolve_database_url

    url = resolve_database_url(current)
    if not current.database_url:
        from orchestrator.store.schema_versions import migrate

        migrate(url)
    return url


@asynccontextmanager
async def _reader(current: Settings) -> AsyncIterator[QueryRunner]:
    """A connection to a schema at head, for commands that only read (no Violet credentials)."""
    from orchestrator.store import query_runner

    if current.database_url:
        url = _resolve_url(current)  # the configured URL, normalized: nothing to wait for
    else:
        url = await asyncio.to_thread(_resolve_url, current)  # starts the embedded server
    async with query_runner.connect(url) as runner:
        yield runner


@cli_errors
def status(ref: str = RefArgument, as_json: bool = JsonOption) -> None:
    """One checkout: state, Violet ids, totals, bags, pending step, next attempt, last error."""
    from orchestrator import audit
    from orchestrator.cli import render

    async def query() -> Checkout:
        async with _reader(settings()) as db:
            return await audit.find_checkout(db, ref)

    checkout = run(query())
    out = render.Output()
    if as_json:
        out.json(checkout.to_json())
    else:
        render.show_checkout(out, checkout)


@cli_errors
def audit_command(ref: str = RefArgument, as_json: bool = JsonOption) -> None:
    """A checkout's full history: every step, Violet call, transition, error and takeover."""
    from orchestrator import audit
    from orchestrator.cli import render

    async def query() -> tuple[Checkout, list[Any]]:
        async with _reader(settings()) as db:
            checkout = await audit.find_checkout(db, ref)
            return checkout, await audit.timeline(db, checkout.id)

    checkout, events = run(query())
    out = render.Output()
    if as_json:
        out.json({"checkout": checkout.to_json(), "events": [e.to_json() for e in events]})
        return
    title = f"{checkout.app_order_id} ({checkout.id}) — {checkout.state}"
    render.show_timeline(out, events, title=title)


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
        async with _reader(settings()) as db:
            return await audit.list_checkouts(
                db,
                state=state,
                since=since_at,
                until=until_at,
                error_type=error_type,
                failed=failed,
                limit=limit,
            )

    checkouts = run(query())
    out = render.Output()
    if as_json:
        out.json({"count": len(checkouts), "checkouts": [c.to_json() for c in checkouts]})
    else:
        render.show_list(out, checkouts)


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

    async def query() -> tuple[audit.Stats, list[Budget]]:
        async with _reader(settings()) as db:
            return await audit.stats(db, exact=exact), await audit.merchant_budgets(db)

    result, budgets = run(query())
    out = render.Output()
    if as_json:
        out.json({**result.to_json(), "budgets": [audit.budget_json(b) for b in budgets]})
        return
    _show_stats(out, result)
    _show_budgets(out, budgets)


def _show_budgets(out: Output, budgets: list[Budget]) -> None:
    """Each Violet rate budget: open or closed for how long, its pace, calls and 429s."""
    if not budgets:
        return
    out.table(
        ("budget", "state", "pace", "calls", "429s"),
        [
            [
                b.key,
                "open" if b.open else f"closed {b.closed_for_s:.1f} s",
                "-" if b.rate_per_s is None else f"{b.rate_per_s:.2f}/s",
                str(b.calls),
                str(b.rate_limited),
            ]
            for b in budgets
        ],
    )


def _show_stats(out: Output, result: audit.Stats) -> None:
    from orchestrator.cli import render

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
