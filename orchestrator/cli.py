"""The `orchestrator` command line (typer): the only place that reads the environment."""

from __future__ import annotations

import typer

from orchestrator.config import load_settings
from orchestrator.errors import ConfigError

app = typer.Typer(
    help="Drive Violet checkouts as persisted, crash-safe state machines.", no_args_is_help=True
)


@app.command()
def config() -> None:
    """Print the effective settings (secrets masked)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for name, value in settings.model_dump().items():
        typer.echo(f"{name} = {value}")


def main() -> None:
    app()
