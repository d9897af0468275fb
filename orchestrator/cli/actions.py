"""`orchestrator cancel-bag`, `orchestrator refund` and `orchestrator bag-actions`: a submitted
checkout's bags canceled or refunded at Violet, each request sent at most once (docs/actions.md).

Exit codes: 0 the action was sent (or already shows on the bag), 1 Violet refused it (`failed`),
2 bad input, 3 the checkout is busy, 4 no such checkout, 5 Violet or the database unavailable
(a Violet that could not be reached leaves the action `failed`, known not applied).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer

from orchestrator.cli.plumbing import ExitCode, JsonOption, cli_errors, run, settings
from orchestrator.errors import InvalidRequest

if TYPE_CHECKING:
    from orchestrator.api import Orchestrator
    from orchestrator.store.actions import BagAction

T = TypeVar("T")

_REF = typer.Argument(..., help="Checkout id, app_order_id or Violet order id.")
_BAG = typer.Argument(..., help="The Violet bag id (see `orchestrator status REF`).")
_ACTOR = typer.Option(..., "--actor", help="Who asks (recorded; support reads it).")
_REASON = typer.Option(None, "--reason", help="Why (sent to Violet, at most 255 characters).")


def register(app: typer.Typer) -> None:
    """The top-level `cancel-bag`, `refund` and `bag-actions` commands."""
    app.command("cancel-bag")(cancel_bag_command)
    app.command("refund")(refund_command)
    app.command("bag-actions")(bag_actions_command)


def _parse_skus(values: list[str]) -> list[tuple[int, int]]:
    """`SKU_ID:QTY` (QTY defaults to 1) as pairs; InvalidRequest names `--sku` otherwise."""
    pairs = []
    for value in values:
        sku, _, qty = value.partition(":")
        try:
            pairs.append((int(sku), int(qty) if qty else 1))
        except ValueError:
            raise InvalidRequest([("--sku", f"expected SKU_ID:QTY, got {value[:40]!r}")]) from None
    return pairs


async def _with(act: Callable[[Orchestrator], Awaitable[T]]) -> T:
    from orchestrator.api import Orchestrator

    async with Orchestrator(settings()) as orch:
        return await act(orch)


def _show(actions: list[BagAction], as_json: bool, *, one: bool = True) -> None:
    """The action (`one`: a document) or the list of them, as JSON or `label: value` lines."""
    from orchestrator.cli import render

    out = render.Output()
    if as_json:
        out.json(actions[0].to_json() if one else [a.to_json() for a in actions])
        return
    if not actions:
        out.line("no cancel or refund was asked of this checkout's bags")
    for action in actions:
        rows = [
            ("action", str(action.id)),
            ("kind", action.kind),
            ("bag", str(action.bag_id)),
            ("state", action.state),
            ("amount", "all that is left" if action.amount is None else str(action.amount)),
            ("actor", action.actor),
            ("requested", render.when(action.requested_at)),
            ("settled", render.when(action.settled_at)),
        ]
        if action.error:
            rows.append(("error", f"{action.error.get('type')}: {action.error.get('message')}"))
        out.fields(rows)
        out.line()


def _exit(action: BagAction) -> None:
    """1 when Violet refused it, 5 when Violet could not be reached (known not applied)."""
    if action.state != "failed":
        return
    error = action.error or {}
    unreachable = error.get("class") == "retryable"
    raise typer.Exit(int(ExitCode.UNAVAILABLE if unreachable else ExitCode.CHECKOUT_FAILED))


@cli_errors
def cancel_bag_command(
    ref: str = _REF,
    bag_id: int = _BAG,
    actor: str = _ACTOR,
    reason: str | None = _REASON,
    as_json: bool = JsonOption,
) -> None:
    """Cancel one bag of a submitted checkout at Violet (sent at most once)."""

    async def act(orch: Orchestrator) -> BagAction:
        return await orch.cancel_bag(ref, bag_id, actor=actor, reason=reason)

    action = run(_with(act))
    _show([action], as_json)
    _exit(action)


@cli_errors
def refund_command(
    ref: str = _REF,
    bag_id: int = _BAG,
    actor: str = _ACTOR,
    amount: int | None = typer.Option(
        None, "--amount", help="Minor units (cents); default: all that is left of the bag."
    ),
    sku: list[str] | None = typer.Option(
        None, "--sku", help="SKU_ID:QTY to refund (repeatable); instead of --amount."
    ),
    reason: str | None = _REASON,
    as_json: bool = JsonOption,
) -> None:
    """Refund a bag of a submitted checkout at Violet: an amount, some SKUs, or all that is left."""
    if amount is not None and sku:
        raise InvalidRequest([("--amount", "give --amount or --sku, not both")])
    skus = _parse_skus(sku) if sku else None

    async def act(orch: Orchestrator) -> BagAction:
        return await orch.refund_bag(
            ref, bag_id, actor=actor, amount=amount, skus=skus, reason=reason
        )

    action = run(_with(act))
    _show([action], as_json)
    _exit(action)


@cli_errors
def bag_actions_command(ref: str = _REF, as_json: bool = JsonOption) -> None:
    """The cancels and refunds asked of a checkout's bags, oldest first."""

    async def act(orch: Orchestrator) -> list[BagAction]:
        return await orch.bag_actions(ref)

    _show(run(_with(act)), as_json, one=False)
