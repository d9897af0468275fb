"""`changes`: the feed a host follows (docs/changes.md), read or followed from the shell.

It reads the database and nothing else: no Violet credentials, no HTTP client, no engine
beyond the schema check. Each change is printed as one line (one JSON object with `--json`), so
a script resumes from the last `cursor` it processed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from orchestrator.cli.plumbing import cli_errors, run, settings

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from orchestrator.config import Settings
    from orchestrator.store.changes import Change

#: The most changes one read returns (Orchestrator.changes has the same bound).
MAX_LIMIT = 1000


def register(app: typer.Typer) -> None:
    """`changes`, at the top level."""
    app.command("changes")(changes_command)


@cli_errors
def changes_command(
    after: str = typer.Option(
        "0:0", "--after", help="Print the changes after this cursor (0:0: from the start)."
    ),
    limit: int = typer.Option(100, "--limit", help=f"At most this many (1-{MAX_LIMIT})."),
    follow: bool = typer.Option(
        False, "--follow", help="Keep printing changes as they come (until interrupted)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per line, each with its `cursor`."
    ),
) -> None:
    """The checkouts' changes after a cursor, oldest first: finished, waiting, bags, actions."""
    from orchestrator.errors import InvalidRequest
    from orchestrator.store import changes

    try:
        changes.parse_cursor(after)
    except ValueError as exc:
        raise InvalidRequest([("--after", str(exc))]) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest([("--limit", f"expected a whole number from 1 to {MAX_LIMIT}")])
    show = _json_line if as_json else _text_line
    printed = run(_print_changes(settings(), after, limit, follow, show))
    if not printed and not as_json:
        typer.echo(f"no changes after {after}", err=True)


async def _print_changes(
    current: Settings, after: str, limit: int, follow: bool, show: Callable[[Change], str]
) -> int:
    """Print the changes (all of them as they come, with `follow`); how many were printed."""
    from orchestrator.store import changes

    conninfo = await _checked_conninfo(current)
    printed = 0
    async with await _connect(conninfo) as reader:

        async def read_after(cursor: str) -> list[Change]:
            return await changes.read(reader, cursor, limit)

        if not follow:
            for change in await read_after(after):
                _emit(show(change))
                printed += 1
            return printed
        async for change in changes.follow(read_after, lambda: _connect(conninfo), after):
            _emit(show(change))
            printed += 1
    return printed


async def _checked_conninfo(current: Settings) -> str:
    """The database's libpq address, once its schema is known to be at head."""
    from orchestrator.store import database

    url = await asyncio.to_thread(_resolve_url, current)
    engine = database.create_engine(url, pool_size=1)
    try:
        await database.check_schema(engine)
    finally:
        await engine.dispose()
    return database.libpq_conninfo(url)


def _resolve_url(current: Settings) -> str:
    """The configured database, or the embedded one (migrated: nobody else will)."""
    from orchestrator.store import database

    url = database.resolve_database_url(current)
    if not current.database_url:
        database.migrate(url)
    return url


async def _connect(conninfo: str) -> AsyncConnection[Any]:
    import psycopg

    return await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, application_name="orchestrator-changes", connect_timeout=5
    )


def _json_line(change: Change) -> str:
    return json.dumps(change.to_json(), separators=(",", ":"), sort_keys=True)


def _text_line(change: Change) -> str:
    from orchestrator.logs import printable

    data = change.to_json()
    detail = json.dumps(data["detail"], separators=(",", ":"), sort_keys=True)
    order = change.app_order_id or data["checkout_id"]
    return printable(
        f"{change.cursor}  {data['at']}  {change.kind}  {order}  {detail}", newlines=False
    )


def _emit(line: str) -> None:
    # Flushed per line: a follower's reader (a pipe) sees each change as it comes.
    typer.echo(line)
    typer.get_text_stream("stdout").flush()
