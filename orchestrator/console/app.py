"""The console as an ASGI application: its route table, its guard, its lifespan.

`create_app(settings)` gives a Starlette app `orchestrator console` serves under uvicorn and a
host may mount (`Mount("/ops", app=create_app(settings, engine=engine))`). Every request passes
`Guard` first: who is asking (auth.py; 401 or 403 when nobody), and the security headers every
answer carries. The route table is `routes()`: one line adds an endpoint, e.g. a metrics app.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Final

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.config import Settings, load_settings
from orchestrator.console.operate import Operate, operator_post
from orchestrator.console.pages import Pages
from orchestrator.console.state import PRINCIPAL, ConsoleState
from orchestrator.errors import SchemaNotMigrated
from orchestrator.metrics.serve import metrics_route
from orchestrator.store import database

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine

    from orchestrator.api import Orchestrator

__all__ = ["Guard", "create_app", "routes"]

#: Sent with every answer: nothing but the console's own files may load or run in its pages,
#: no other site may frame them, forms post only to the console, and no page is cached.
SECURITY_HEADERS: Final = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


class Guard:
    """ASGI middleware: admit a request only with a principal, and harden every answer."""

    def __init__(self, app: ASGIApp, console: ConsoleState) -> None:
        self.app = app
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        headers = Headers(scope=scope)
        client = scope.get("client")
        auth = self.console.auth
        principal = auth.identify(
            headers.get("authorization"),
            client_host=client[0] if client else None,
            host_header=headers.get("host", ""),
        )
        if principal is None:
            if auth.configured:
                answer = PlainTextResponse(
                    "401 authentication required\n",
                    status_code=401,
                    headers={"www-authenticate": ", ".join(auth.schemes)},
                )
            else:
                answer = PlainTextResponse(
                    "403 this console has no authentication configured, so it answers only "
                    "requests from this machine to localhost (docs/console.md)\n",
                    status_code=403,
                )
            await answer(scope, receive, hardened)
            return
        scope[PRINCIPAL] = principal
        await self.app(scope, receive, hardened)


async def _unavailable(request: Request, exc: Exception) -> Response:
    """The database failing a page is said as such (503), in the driver's first line only:
    statement parameters are never echoed. Anything else stays a plain 500."""
    if isinstance(exc, SchemaNotMigrated) or database.is_database_error(exc):
        reason = str(exc) if isinstance(exc, SchemaNotMigrated) else database.error_reason(exc)
        return PlainTextResponse(f"503 the database is unavailable: {reason}\n", status_code=503)
    return PlainTextResponse("500 internal error (see the console's log)\n", status_code=500)


def routes(console: ConsoleState) -> list[BaseRoute]:
    """The console's route table. Every POST is built with `operator_post` (role and CSRF).
    Another ASGI app joins it in one line, e.g. `Mount("/metrics", app=metrics_app)`."""
    pages = Pages(console)
    operate = Operate(console)
    return [
        Route("/", pages.overview, name="overview"),
        Route("/checkouts", pages.checkouts, name="checkouts"),
        Route("/checkouts/{ref}", pages.checkout, name="checkout"),
        Route("/checkouts/{ref}/{action}", operate.confirm, name="confirm"),
        Route(
            "/checkouts/{ref}/{action}",
            operator_post(console, operate.perform),
            methods=["POST"],
            name="perform",
        ),
        Route("/bulk/{action}", operate.dry_run, name="dry_run"),
        # Prometheus' scrape: any principal may read it, a viewer's token included.
        metrics_route(console.engine),
        Route(
            "/bulk/{action}", operator_post(console, operate.bulk), methods=["POST"], name="bulk"
        ),
        Mount(
            "/static",
            app=StaticFiles(packages=[("orchestrator.console", "static")]),
            name="static",
        ),
    ]


def create_app(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    orchestrator: Orchestrator | None = None,
    violet_transport: httpx.AsyncBaseTransport | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The console as an ASGI app.

    `settings` default to the environment's (`load_settings()`); pass the host's `engine` to
    share its connection pool, an open `orchestrator` for the actions to share the host's, and
    `extra_routes` to serve more under the same guard. The app's `state.console` is its
    `ConsoleState`: a host that mounts the app (mounted apps receive no lifespan events) awaits
    `app.state.console.close()` at shutdown; the database and the orchestrator open on first
    use.
    """
    console = ConsoleState(
        settings or load_settings(),
        engine=engine,
        orchestrator=orchestrator,
        violet_transport=violet_transport,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await console.open()
        try:
            yield
        finally:
            await console.close()

    app = Starlette(
        routes=[*routes(console), *extra_routes],
        middleware=[Middleware(Guard, console=console)],
        exception_handlers={Exception: _unavailable},
        lifespan=lifespan,
    )
    app.state.console = console
    return app
