"""What a command that drives one checkout prints and exits with, whatever drove it (`checkout`
start, run, confirm, pay; `retry`): the checkout, and an exit code that says what became of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from orchestrator.cli.plumbing import ExitCode

if TYPE_CHECKING:
    from orchestrator.checkout import Checkout


def print_checkout(checkout: Checkout, as_json: bool, *, show_secret: bool = False) -> None:
    from orchestrator.cli import render

    out = render.Output()
    handout = checkout.handout
    if as_json:
        document = checkout.to_json()
        if handout:
            shown = (
                dict(handout)
                if show_secret
                else {k: v for k, v in handout.items() if k != "payment_intent_client_secret"}
            )
            document["handout"] = shown
        out.json(document)
    else:
        render.show_checkout(out, checkout)
        secret = handout.get("payment_intent_client_secret")
        if secret and show_secret:
            out.line(f"client_secret: {secret}")
            out.line(f"stripe_key:    {handout.get('stripe_key', '')}")
    if handout.get("payment_intent_client_secret") and not show_secret:
        typer.echo(
            "note: a payment intent client secret is ready for the shopper's front end; "
            "it is never stored or shown unless you pass --show-secret",
            err=True,
        )


def checkout_exit(checkout: Checkout) -> None:
    """Exit 1 for a failed checkout, 3 when the send gate held a request back (the worker, not
    Violet, was in doubt), 5 when Violet could not be reached or refused our credentials (the
    row stays due)."""
    from orchestrator import states  # no `transitions` import on this path
    from orchestrator.cli import render

    if checkout.state == states.FAILED:
        raise typer.Exit(int(ExitCode.CHECKOUT_FAILED))
    error = checkout.last_error or {}
    if checkout.credentials_refused:
        typer.echo(
            f"error: Violet refused the credentials ({error.get('message')}); the checkout is "
            f"kept, not failed, and is due again at {render.when(checkout.next_attempt_at)}: fix "
            "VIOLET_APP_ID, VIOLET_APP_SECRET, VIOLET_USERNAME or VIOLET_PASSWORD, then run "
            "`orchestrator recover`",
            err=True,
        )
        raise typer.Exit(int(ExitCode.UNAVAILABLE))
    if not checkout.is_terminal and error.get("type") == "VioletSendRefused":  # as recorded
        typer.echo(
            f"error: the {error.get('step')} request was not sent (this worker was too late for "
            "it or unsure of its lease; Violet was not asked); the checkout is kept and left to "
            f"`orchestrator recover` to reconcile, due at {render.when(checkout.next_attempt_at)}",
            err=True,
        )
        raise typer.Exit(int(ExitCode.BUSY))
    unreachable = error.get("class") in ("retryable", "outcome_unknown") and not error.get("status")
    if not checkout.is_terminal and not checkout.is_waiting and unreachable:
        typer.echo(
            f"error: Violet could not be reached ({error.get('type')}); the checkout is saved "
            f"and will be retried at {render.when(checkout.next_attempt_at)} "
            "by `orchestrator recover` or `orchestrator checkout run`",
            err=True,
        )
        raise typer.Exit(int(ExitCode.UNAVAILABLE))
