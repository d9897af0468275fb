"""`orchestrator db ...`: the orchestrator's schema (alembic) and the SQL for its roles."""

from __future__ import annotations

from collections.abc import Callable

import typer

from orchestrator.cli.plumbing import JsonOption, cli_errors, settings
from orchestrator.errors import DatabaseUnavailable

db_app = typer.Typer(
    help="The orchestrator's database schema (alembic).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def register(app: typer.Typer) -> None:
    """The `db` group."""
    app.add_typer(db_app, name="db")


@db_app.command("upgrade")
@cli_errors
def db_upgrade(
    revision: str = typer.Option("head", "--revision", help="Target revision."),
) -> None:
    """Apply the orchestrator's migrations (idempotent; safe from several hosts at once)."""
    from orchestrator.store import database

    url = database.resolve_database_url(settings())
    database.migrate(url, revision)
    typer.echo(f"{database.describe_url(url)} at revision {database.current_revision(url) or '-'}")


@db_app.command("current")
@cli_errors
def db_current(as_json: bool = JsonOption) -> None:
    """The database's schema revision and the one this code needs."""
    import sqlalchemy.exc

    from orchestrator.cli import render
    from orchestrator.store import database

    url = database.resolve_database_url(settings())
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
