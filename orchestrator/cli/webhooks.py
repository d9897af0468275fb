"""`orchestrator webhooks serve`: the webhook receiver alone under uvicorn; `orchestrator webhooks
apply`: settle the inbox's pending events (what `recover` also does before each claim).

A sub-application of the CLI (`register`), also runnable as its own process, which the crash
tests kill:
``python -m orchestrator.cli.webhooks serve --port 0``. Uvicorn, the receiver and the database
driver load when the command runs, not when `orchestrator` starts.
Exit codes: serve: 0 stopped by a signal; 2 bad settings; 5 the database cannot be used.
apply: 0 done; 1 an event was marked failed (kept in the inbox with its reason); 2 bad settings;
5 the database cannot be used.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from orchestrator.cli.plumbing import (
    ExitCode,
    JsonOption,
    classify,
    cli_errors,
    configure_logging,
    fail,
    run,
    settings,
)
from orchestrator.cli.serving import announcing_server, bind

if TYPE_CHECKING:
    from orchestrator.webhooks.apply import ApplySummary

ANNOUNCE_PREFIX = "webhooks listening on "

webhooks_app = typer.Typer(
    help="Receive Violet's webhooks into the inbox.", no_args_is_help=True, rich_markup_mode=None
)


@webhooks_app.callback()
def webhooks() -> None:
    """Receive Violet's webhooks into the inbox (applied later, under each checkout's lease)."""


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8050, "--port", min=0, max=65535, help="0 picks a free port."),
    debug: bool = typer.Option(False, "--debug", help="Log more; show tracebacks."),
) -> None:
    """Serve the webhook receiver until interrupted; register http://HOST:PORT/ with Violet.

    Every path answers, so a reverse proxy may forward any path to it. It answers 200 only once
    the event is stored, 401 to a wrong signature, 413 to a body over
    ORCHESTRATOR_WEBHOOK_MAX_BODY_BYTES, 503 when the database cannot store it.
    """
    import uvicorn

    from orchestrator.config import load_settings
    from orchestrator.webhooks.receive import WebhookReceiver

    configure_logging(debug)
    try:
        receiver = WebhookReceiver.from_settings(load_settings())
    except Exception as exc:
        if debug:
            raise
        raise fail(*classify(exc)) from None
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        receiver,
        log_level="debug" if debug else "warning",
        access_log=False,
        lifespan="on",
        backlog=2048,
        timeout_graceful_shutdown=5,
        proxy_headers=False,
        server_header=False,
    )
    server = announcing_server(config, f"{ANNOUNCE_PREFIX}http://{shown}:{sock.getsockname()[1]}/")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise fail(ExitCode.UNAVAILABLE, "the receiver did not start (see the reason above)")


async def _apply(until_idle: bool, batch: int) -> ApplySummary:
    from orchestrator.store import database
    from orchestrator.webhooks.apply import WebhookApplier, applier_pool

    url = database.resolve_database_url(settings())
    async with applier_pool(url) as pool:
        applier = WebhookApplier(pool)
        if until_idle:
            return await applier.run_until_idle(batch=batch)
        return await applier.apply_pending(batch)


@webhooks_app.command("apply")
@cli_errors
def apply(
    until_idle: bool = typer.Option(
        False,
        "--until-idle",
        help="Repeat until no event is pending (but those waiting on a busy checkout for long).",
    ),
    batch: int = typer.Option(20, "--batch", min=1, max=1000, help="Events per pass."),
    json_output: bool = JsonOption,
    debug: bool = typer.Option(False, "--debug", help="Log more; show tracebacks."),
) -> None:
    """Apply pending webhook events to their checkouts, each under the checkout's lease.

    An event whose checkout is busy stays pending for the next run; one that cannot be applied
    is marked failed after a few attempts, with its reason, and kept.
    """
    configure_logging(debug)
    summary = run(_apply(until_idle, batch))
    if json_output:
        typer.echo(json.dumps(summary.to_json()))
    else:
        typer.echo(" ".join(f"{k}={v}" for k, v in summary.to_json().items()))
    if summary.failed:
        raise fail(
            ExitCode.CHECKOUT_FAILED,
            f"{summary.failed} event(s) marked failed (reason in webhook_inbox.reason; "
            "logged above)",
        )


if __name__ == "__main__":
    webhooks_app()
