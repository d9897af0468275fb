"""The read-only pages: the overview, the checkout list (filters, search, pages) and a checkout.

They read the database through the audit queries and nothing else: no Violet call, no lease.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from orchestrator import audit, states
from orchestrator.checkout import Checkout
from orchestrator.console import present
from orchestrator.console.actions import ACTIONS
from orchestrator.console.filters import ListFilter
from orchestrator.console.plot import failure_chart
from orchestrator.console.state import ConsoleState, principal_of
from orchestrator.errors import CheckoutNotFound, InvalidRequest
from orchestrator.store import action_reads, bag_reads
from orchestrator.store.query_runner import as_runner

__all__ = ["PAGE_SIZE", "WINDOWS", "Pages"]

PAGE_SIZE: Final = 50
#: The overview's plot windows: how far back, and how wide a bar is.
WINDOWS: Final[dict[str, tuple[timedelta, int]]] = {
    "24h": (timedelta(hours=24), 3600),
    "7d": (timedelta(days=7), 6 * 3600),
}


class Pages:
    """GET handlers, bound to the running console."""

    def __init__(self, console: ConsoleState) -> None:
        self.console = console

    async def overview(self, request: Request) -> Response:
        console = self.console
        engine = await console.engine()
        window = request.query_params.get("window", "24h")
        if window not in WINDOWS:
            window = "24h"
        span, bucket = WINDOWS[window]
        counts = await audit.stats(engine)
        since = counts.at - span
        failures = await audit.failures_over_time(engine, since=since, bucket_seconds=bucket)
        return console.render(
            request,
            "overview.html",
            {
                "stats": counts,
                "states": states,
                "now": counts.at,
                "pauses": await audit.throttle_pauses(engine),
                "budgets": {b.key: b for b in await audit.merchant_budgets(engine)},
                "chart": failure_chart(
                    failures, since=since, until=counts.at, bucket_seconds=bucket
                ),
                "window": window,
                "windows": list(WINDOWS),
            },
        )

    async def checkouts(self, request: Request) -> Response:
        console = self.console
        query = request.query_params
        search = query.get("q", "").strip()
        if search:
            return await self._search(request, search)
        try:
            chosen = ListFilter.from_query(query)
            after = audit.Cursor.parse(query["after"]) if query.get("after") else None
            found = await audit.list_checkouts(
                await console.engine(),
                **chosen.audit_filters(console.window),
                after=after,
                limit=PAGE_SIZE + 1,
            )
        except InvalidRequest as exc:
            return self._list(request, ListFilter(), [], problems=exc.fields, status=400)
        page = found[:PAGE_SIZE]
        more = audit.Cursor.after(page[-1]) if len(found) > PAGE_SIZE else None
        return self._list(request, chosen, page, after=after, next_cursor=more)

    async def _search(self, request: Request, search: str) -> Response:
        try:
            found = await audit.find_checkout(await self.console.engine(), search[:300])
        except CheckoutNotFound:
            return self._list(request, ListFilter(), [], missing=search[:300], status=404)
        root = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(
            root + request.app.url_path_for("checkout", ref=str(found.id)), status_code=303
        )

    def _list(
        self,
        request: Request,
        chosen: ListFilter,
        page: list[Checkout],
        *,
        after: audit.Cursor | None = None,
        next_cursor: audit.Cursor | None = None,
        problems: list[tuple[str, str]] | None = None,
        missing: str | None = None,
        status: int = 200,
    ) -> Response:
        principal = principal_of(request)
        bulk = [
            action
            for action in ACTIONS.values()
            if action.bulk_scope is not None and principal.may_act and not chosen.is_empty
        ]
        return self.console.render(
            request,
            "list.html",
            {
                "filter": chosen,
                "checkouts": page,
                "states": states.STATES,
                "first_page": after is not None,
                "next_query": chosen.query(after=next_cursor) if next_cursor else None,
                "problems": problems or [],
                "missing": missing,
                "bulk": bulk,
                "now": datetime.now(UTC),
            },
            status=status,
        )

    async def checkout(self, request: Request) -> Response:
        console = self.console
        engine = await console.engine()
        ref = request.path_params["ref"]
        try:
            found = await audit.find_checkout(engine, ref)
        except CheckoutNotFound:
            return console.render(
                request,
                "error.html",
                {"title": "No such checkout", "message": f"No checkout with the reference {ref}."},
                status=404,
            )
        events = await audit.timeline(engine, found.id)
        recorded = await bag_reads.recorded_bags(as_runner(engine), found.id)
        bag_actions = await action_reads.actions_of(engine, found.id)
        principal = principal_of(request)
        done = ACTIONS.get(request.query_params.get("done", ""))
        now = datetime.now(UTC)
        return console.render(
            request,
            "checkout.html",
            {
                "c": found,
                "error": present.error_sentence(found),
                "flight": present.flight_sentence(found, now),
                "timeline": present.timeline(events),
                "bags": present.bag_rows(found, recorded),
                "bag_actions": bag_actions,
                "actions": [a for a in ACTIONS.values() if principal.may_act and a.offered(found)],
                "done": done,
                "now": now,
            },
        )
