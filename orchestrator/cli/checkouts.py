"""`orchestrator checkout ...`: start, drive, cancel, confirm and pay for one checkout.

Each command drives the checkout through `Orchestrator` (imported when the command runs) and
exits with what happened to it: 1 failed, 3 held back by the send gate, 5 Violet unreachable.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from orchestrator.cli import documents
from orchestrator.cli.outcome import checkout_exit, print_checkout
from orchestrator.cli.plumbing import JsonOption, cli_errors, run, settings
from orchestrator.errors import InvalidRequest

if TYPE_CHECKING:
    from orchestrator.checkout import Checkout
    from orchestrator.request import CheckoutRequest

checkout_app = typer.Typer(
    help="Start, drive, cancel and resume checkouts.", no_args_is_help=True, rich_markup_mode=None
)


def register(app: typer.Typer) -> None:
    """The `checkout` group."""
    app.add_typer(checkout_app, name="checkout")


def _read_request(path: Path, limit: int) -> CheckoutRequest:
    """A checkout request from a JSON file or stdin (`-`) of at most `limit` bytes;
    InvalidRequest names the source or the bad field."""
    from orchestrator.request import CheckoutRequest

    return CheckoutRequest.parse(documents.read_json_object(path, limit=limit))


async def _with_orchestrator(
    action: Callable[[Any], Coroutine[Any, Any, Checkout]],
) -> Checkout:
    from orchestrator.api import Orchestrator

    async with Orchestrator(settings()) as orch:
        return await action(orch)


@checkout_app.command("start")
@cli_errors
def checkout_start(
    file: Path = typer.Argument(
        ..., help="A JSON checkout request (see docs/cli.md); - reads it from stdin."
    ),
    no_run: bool = typer.Option(False, "--no-run", help="Only register it (due now)."),
    as_json: bool = JsonOption,
    show_secret: bool = typer.Option(
        False, "--show-secret", help="Print the payment intent client secret (intent payments)."
    ),
) -> None:
    """Register a checkout from FILE and drive it as far as it can go now."""
    request = _read_request(file, settings().max_request_bytes)
    if no_run and request.payment.type == "card":
        typer.echo(
            "note: card data is never stored; a card checkout registered with --no-run will wait "
            "in awaiting_payment for the card to be given again (`orchestrator checkout pay`)",
            err=True,
        )
    checkout = run(_with_orchestrator(lambda orch: orch.start(request, run=not no_run)))
    print_checkout(checkout, as_json, show_secret=show_secret)
    checkout_exit(checkout)


@checkout_app.command("run")
@cli_errors
def checkout_run(
    ref: str = typer.Argument(..., help="Checkout id, app_order_id or Violet order id."),
    wait: float = typer.Option(
        0.0, "--wait", min=0, help="Wait up to this many seconds for retries that fall due."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Drive a checkout as far as it can go now (retries due later are left scheduled)."""
    checkout = run(_with_orchestrator(lambda orch: orch.run(ref, retry_wait=wait)))
    print_checkout(checkout, as_json)
    checkout_exit(checkout)


@checkout_app.command("cancel")
@cli_errors
def checkout_cancel(
    ref: str = typer.Argument(..., help="Checkout id, app_order_id or Violet order id."),
    as_json: bool = JsonOption,
) -> None:
    """Cancel a non-terminal checkout and release its Violet cart."""
    checkout = run(_with_orchestrator(lambda orch: orch.cancel(ref)))
    print_checkout(checkout, as_json)


@checkout_app.command("confirm-payment")
@cli_errors
def checkout_confirm_payment(
    ref: str = typer.Argument(..., help="Checkout id, app_order_id or Violet order id."),
    as_json: bool = JsonOption,
) -> None:
    """The shopper confirmed (payment intent or 3-D Secure): price and submit, at most once."""
    checkout = run(_with_orchestrator(lambda orch: orch.confirm_payment(ref)))
    print_checkout(checkout, as_json)
    checkout_exit(checkout)


_CARD_ON_ARGV = InvalidRequest(
    [
        (
            "command line",
            "card data is read from a file or stdin (--card FILE or --card -), never from the "
            "command line (not shown here: it may be card data)",
        )
    ]
)


@checkout_app.command(
    "pay", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
@cli_errors
def checkout_pay(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Checkout id, app_order_id or Violet order id."),
    card: str = typer.Option(
        ...,
        "--card",
        help="A JSON file holding the card, as the request's card payment; - reads it from "
        "stdin. Never the card itself: argv is visible to every user of the machine.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Give the card again to a checkout waiting in awaiting_payment, and drive it on."""
    from orchestrator.request import CardPaymentRequest, contains_card_number

    # Extra arguments, an unknown option or inline JSON may be card data: refused, not echoed.
    if ctx.args or card.lstrip().startswith("{") or contains_card_number(card):
        raise _CARD_ON_ARGV
    data = documents.read_json_object(card, limit=settings().max_request_bytes)
    data.setdefault("type", "card")
    payment = CardPaymentRequest.parse(data)
    checkout = run(_with_orchestrator(lambda orch: orch.provide_payment(ref, payment)))
    print_checkout(checkout, as_json)
    checkout_exit(checkout)
