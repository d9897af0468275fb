"""The actions' pages: a confirmation before each, the POST that does it, and bulk runs over the
list's filter with a dry run that names every checkout it would touch.

Only an operator sees these pages, and every POST passes `operator_post` first: the operator
role, then the CSRF token rendered into the confirmation form. A bulk POST carries the exact
ids its dry run showed, never the filter: checkouts that match the filter only later are not
touched. Each action goes through the library's front door with the operator as the actor.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from orchestrator import audit
from orchestrator.checkout import Checkout
from orchestrator.console.actions import ACTIONS, Action, Ask
from orchestrator.console.csrf import FIELD, HEADER
from orchestrator.console.filters import ListFilter
from orchestrator.console.state import ConsoleState, principal_of
from orchestrator.errors import (
    CheckoutBusy,
    CheckoutConflict,
    CheckoutNotFound,
    ConfigError,
    IllegalTransition,
    InvalidRequest,
    LeaseLost,
    OrchestratorError,
)

__all__ = ["Operate", "operator_post", "status_of"]

_MAX_REASON: Final = 500
#: Checkouts a bulk run works on at once (each may call Violet).
_BULK_CONCURRENCY: Final = 4

PostHandler = Callable[[Request, FormData], Awaitable[Response]]


def status_of(exc: OrchestratorError) -> int:
    """The HTTP status a refused action is shown with."""
    if isinstance(exc, InvalidRequest):
        return 400
    if isinstance(exc, CheckoutNotFound):
        return 404
    if isinstance(exc, IllegalTransition | CheckoutConflict | CheckoutBusy | LeaseLost):
        return 409
    return 503  # the database, Violet or the configuration: nothing was decided


def operator_post(console: ConsoleState, handler: PostHandler) -> Callable[[Request], Any]:
    """A POST endpoint that runs `handler` only for an operator who sent back a valid CSRF
    token (403 otherwise, with nothing done). Every POST route of the console is built by it."""

    async def endpoint(request: Request) -> Response:
        principal = principal_of(request)
        if not principal.may_act:
            return _forbidden(console, request, "Your role may read the console, not act in it.")
        try:
            form = await request.form(max_files=0, max_fields=console.bulk_limit + 10)
        except Exception:  # a malformed or oversized body: refuse it, whatever the parser said
            return _forbidden(console, request, "The form could not be read.", status=400)
        token = form.get(FIELD) or request.headers.get(HEADER)
        if not isinstance(token, str) or not console.csrf.valid(token, principal):
            return _forbidden(
                console,
                request,
                "This form is missing its security token or the token is stale: reload the page "
                "and confirm again. Nothing was changed.",
            )
        return await handler(request, form)

    endpoint.csrf_protected = True  # type: ignore[attr-defined]  # checked by the tests
    return endpoint


def _forbidden(
    console: ConsoleState, request: Request, message: str, *, status: int = 403
) -> Response:
    return console.render(
        request, "error.html", {"title": "Refused", "message": message}, status=status
    )


def _reason(form: FormData, action: Action) -> str | None:
    if not action.asks_reason:
        return None
    value = form.get("reason")
    text = value.strip() if isinstance(value, str) else ""
    return text[:_MAX_REASON] or None


class Operate:
    """The action handlers, bound to the running console."""

    def __init__(self, console: ConsoleState) -> None:
        self.console = console

    def _action(self, request: Request) -> Action | None:
        return ACTIONS.get(request.path_params["action"])

    # -- one checkout ---------------------------------------------------------------------------

    async def confirm(self, request: Request) -> Response:
        """The confirmation page of an action on one checkout."""
        console = self.console
        if not principal_of(request).may_act:
            return _forbidden(console, request, "Your role may read the console, not act in it.")
        action = self._action(request)
        if action is None:
            return _forbidden(console, request, "No such action.", status=404)
        try:
            found = await audit.find_checkout(await console.engine(), request.path_params["ref"])
        except CheckoutNotFound as exc:
            return _forbidden(console, request, str(exc), status=404)
        refusal = action.refusal(found)
        return self._confirmation(request, action, found, refusal, status=409 if refusal else 200)

    def _confirmation(
        self,
        request: Request,
        action: Action,
        found: Checkout,
        problem: str | None,
        *,
        status: int,
        reason: str | None = None,
    ) -> Response:
        return self.console.render(
            request,
            "confirm.html",
            {
                "action": action,
                "c": found,
                "problem": problem,
                "offered": action.offered(found),
                "reason": reason or "",
                "actions_configured": self.console.actions_configured,
            },
            status=status,
        )

    async def perform(self, request: Request, form: FormData) -> Response:
        """Do a confirmed action on one checkout, then show the checkout (its timeline names
        the operator)."""
        console = self.console
        action = self._action(request)
        if action is None:
            return _forbidden(console, request, "No such action.", status=404)
        engine = await console.engine()
        try:
            found = await audit.find_checkout(engine, request.path_params["ref"])
        except CheckoutNotFound as exc:
            return _forbidden(console, request, str(exc), status=404)
        ask = Ask(principal_of(request).actor, _reason(form, action))
        try:
            orch = await console.orchestrator()
            await action.perform(orch, found.id, ask)
        except OrchestratorError as exc:
            again = await audit.find_checkout(engine, found.id)
            return self._confirmation(
                request, action, again, _problem(exc), status=status_of(exc), reason=ask.reason
            )
        root = request.scope.get("root_path", "").rstrip("/")
        target = request.app.url_path_for("checkout", ref=str(found.id))
        return RedirectResponse(f"{root}{target}?done={action.name}", status_code=303)

    # -- over a filter --------------------------------------------------------------------------

    async def dry_run(self, request: Request) -> Response:
        """What a bulk run over the list's filter would touch: every checkout, by name."""
        console = self.console
        if not principal_of(request).may_act:
            return _forbidden(console, request, "Your role may read the console, not act in it.")
        action = self._action(request)
        if action is None or action.bulk_scope is None:
            return _forbidden(console, request, "No such bulk action.", status=404)
        try:
            chosen = ListFilter.from_query(request.query_params)
        except InvalidRequest as exc:
            return _forbidden(console, request, str(exc), status=400)
        if chosen.is_empty:
            return _forbidden(
                console,
                request,
                "Choose a filter first: a bulk action never runs over every checkout.",
                status=400,
            )
        try:
            found = await audit.list_checkouts(
                await console.engine(),
                **{**chosen.audit_filters(console.window), **action.bulk_scope},
                limit=console.bulk_limit + 1,
            )
        except InvalidRequest as exc:
            return _forbidden(console, request, str(exc), status=400)
        more = len(found) > console.bulk_limit
        found = found[: console.bulk_limit]
        touch = [c for c in found if action.offered(c)]
        skip = [(c, action.refusal(c)) for c in found if not action.offered(c)]
        return console.render(
            request,
            "bulk_confirm.html",
            {
                "action": action,
                "filter": chosen,
                "touch": touch,
                "skip": skip,
                "more": more,
                "limit": console.bulk_limit,
                "actions_configured": console.actions_configured,
            },
        )

    async def bulk(self, request: Request, form: FormData) -> Response:
        """Do a confirmed bulk action on exactly the checkouts its dry run listed."""
        console = self.console
        action = self._action(request)
        if action is None or action.bulk_scope is None:
            return _forbidden(console, request, "No such bulk action.", status=404)
        raw = [v for v in form.getlist("id") if isinstance(v, str)]
        try:
            ids = list(dict.fromkeys(uuid.UUID(v) for v in raw))
        except ValueError:
            return _forbidden(console, request, "id: not a checkout id.", status=400)
        if not ids or len(ids) > console.bulk_limit:
            return _forbidden(
                console, request, f"id: 1 to {console.bulk_limit} checkouts.", status=400
            )
        ask = Ask(principal_of(request).actor, _reason(form, action))
        try:
            orch = await console.orchestrator()
        except ConfigError as exc:
            return _forbidden(console, request, str(exc), status=503)
        gate = asyncio.Semaphore(_BULK_CONCURRENCY)

        async def one(checkout_id: uuid.UUID) -> dict[str, Any]:
            async with gate:
                try:
                    done = await action.perform_in_bulk(orch, checkout_id, ask)
                except OrchestratorError as exc:
                    return {"id": checkout_id, "ok": False, "outcome": _problem(exc)}
                return {
                    "id": checkout_id,
                    "ok": True,
                    "app_order_id": done.app_order_id,
                    "outcome": f"done: now {done.state}",
                }

        results = await asyncio.gather(*(one(i) for i in ids))
        return console.render(
            request,
            "bulk_done.html",
            {
                "action": action,
                "results": results,
                "done": sum(1 for r in results if r["ok"]),
            },
        )


def _problem(exc: OrchestratorError) -> str:
    """A refusal in words, for the page (the front door's messages never hold a secret)."""
    if isinstance(exc, InvalidRequest):
        return "; ".join(f"{name}: {why}" for name, why in exc.fields)
    return str(exc)
