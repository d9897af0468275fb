"""`orchestrator console`: the operators' web console under uvicorn.

It listens on 127.0.0.1 unless told otherwise, and refuses any other address while no login is
configured (`ORCHESTRATOR_CONSOLE_USERS` or `_TOKENS`): without one, whoever reaches the port
would be an operator. Starlette, Jinja2 and uvicorn load when the command runs.
Exit codes: 0 stopped by a signal; 2 bad settings or a refused address; 5 the database cannot
be used.
"""

from __future__ import annotations

import typer

from orchestrator.cli.plumbing import ExitCode, classify, configure_logging, fail

ANNOUNCE_PREFIX = "console listening on "


def register(app: typer.Typer) -> None:
    app.command("console")(console)


def console(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (not a loopback one: logins required)."
    ),
    port: int = typer.Option(8470, "--port", min=0, max=65535, help="0 picks a free port."),
    debug: bool = typer.Option(False, "--debug", help="Log more; show tracebacks."),
) -> None:
    """Serve the web console: checkouts, timelines, an overview, and audited actions.

    Open http://HOST:PORT/ in a browser. Logins and roles come from ORCHESTRATOR_CONSOLE_USERS
    (basic auth) and ORCHESTRATOR_CONSOLE_TOKENS (bearer); with neither, only this machine is
    served, and its user is an operator. Actions need Violet's credentials (see docs/console.md).
    """
    import uvicorn

    from orchestrator.cli.serving import announcing_server, bind
    from orchestrator.config import load_settings
    from orchestrator.console import create_app
    from orchestrator.console.auth import is_loopback_host

    configure_logging(debug)
    try:
        settings = load_settings()
    except Exception as exc:
        raise fail(*classify(exc)) from None
    if not is_loopback_host(host) and not settings.console_auth_configured:
        raise fail(
            ExitCode.BAD_INPUT,
            f"refusing to listen on {host} without authentication: anyone reaching it would be "
            "an operator. Set ORCHESTRATOR_CONSOLE_USERS or ORCHESTRATOR_CONSOLE_TOKENS "
            "(docs/console.md), or listen on 127.0.0.1",
        )
    app = create_app(settings)
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise fail(ExitCode.BAD_INPUT, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        app,
        log_level="debug" if debug else "warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        proxy_headers=False,
        server_header=False,
    )
    if not app.state.console.actions_configured:
        typer.echo(
            "note: Violet's credentials are not set: the console reads, and refuses actions",
            err=True,
        )
    server = announcing_server(config, f"{ANNOUNCE_PREFIX}http://{shown}:{sock.getsockname()[1]}/")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise fail(ExitCode.UNAVAILABLE, "the console did not start (see the reason above)")
