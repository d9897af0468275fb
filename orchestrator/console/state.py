"""What the console holds while it runs: settings, auth, CSRF keys, templates, the database
engine its pages read through, and one `Orchestrator` for the actions.

The engine and the orchestrator open with the app's lifespan (`orchestrator console` sends it),
or on first use when a host mounts the app (a mounted sub-application receives no lifespan
events); `close()` ends what the console opened itself, never what the host passed in.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any, Final

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from orchestrator.audit import SettleWindow
from orchestrator.config import Settings
from orchestrator.console import present
from orchestrator.console.auth import Authenticator, Principal
from orchestrator.console.csrf import FIELD, CsrfTokens
from orchestrator.describe import money, when
from orchestrator.errors import ConfigError
from orchestrator.store import database

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine

    from orchestrator.api import Orchestrator

__all__ = ["PRINCIPAL", "ConsoleState", "principal_of"]

#: Where the auth middleware leaves the request's principal in the ASGI scope.
PRINCIPAL: Final = "orchestrator.console.principal"
# A console page must not hang on a statement: the list's merchant filter has no index.
_STATEMENT_TIMEOUT_S: Final = 10.0
_LOCK_TIMEOUT_S: Final = 2.0


def principal_of(request: Request) -> Principal:
    principal = request.scope.get(PRINCIPAL)
    assert isinstance(principal, Principal), "the auth middleware runs before every page"
    return principal


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("orchestrator.console", "templates"),
        autoescape=True,  # every template, whatever its name: Violet's text is untrusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["ago"] = present.ago
    env.globals["money"] = money
    env.globals["kind_class"] = present.kind_class
    return env


class ConsoleState:
    """The running console's parts (one per app)."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine | None = None,
        orchestrator: Orchestrator | None = None,
        violet_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.auth = Authenticator(settings.console_users or (), settings.console_tokens or ())
        key = settings.console_secret
        self.csrf = CsrfTokens(
            None if key is None else hashlib.sha256(key.get_secret_value().encode()).digest()
        )
        self.window = SettleWindow.of(settings.total_timeout, settings.submit_settle_seconds)
        self.bulk_limit = settings.console_bulk_limit
        self.templates = _templates()
        self._engine = engine
        self._owns_engine = engine is None
        self._orchestrator = orchestrator
        self._owns_orchestrator = orchestrator is None
        self._transport = violet_transport
        self._opening = asyncio.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect to the database (checking its schema), and open the orchestrator for the
        actions when Violet's credentials are configured (without them the console reads)."""
        await self.engine()
        if self.actions_configured:
            await self.orchestrator()

    @property
    def actions_configured(self) -> bool:
        if self._orchestrator is not None:
            return True
        try:
            self.settings.require_violet_credentials()
        except ConfigError:
            return False
        return True

    async def engine(self) -> AsyncEngine:
        async with self._opening:
            if self._engine is None:
                url = await asyncio.to_thread(_database_url, self.settings)
                engine = database.create_engine(
                    url,
                    pool_size=4,
                    lock_timeout=_LOCK_TIMEOUT_S,
                    statement_timeout=min(_STATEMENT_TIMEOUT_S, self.settings.db_statement_timeout),
                )
                try:
                    await database.check_schema(engine)
                except BaseException:
                    await engine.dispose()
                    raise
                self._engine = engine
            return self._engine

    async def orchestrator(self) -> Orchestrator:
        """The orchestrator the actions go through (ConfigError without Violet credentials)."""
        engine = await self.engine()
        async with self._opening:
            if self._orchestrator is None:
                from orchestrator.api import Orchestrator

                self._orchestrator = await Orchestrator(
                    self.settings, engine=engine, violet_transport=self._transport
                ).open()
            return self._orchestrator

    async def close(self) -> None:
        async with self._opening:
            if self._owns_orchestrator and self._orchestrator is not None:
                await self._orchestrator.close()
                self._orchestrator = None
            if self._owns_engine and self._engine is not None:
                await self._engine.dispose()
                self._engine = None

    # -- pages ----------------------------------------------------------------------------------

    def render(
        self, request: Request, template: str, context: dict[str, Any], *, status: int = 200
    ) -> HTMLResponse:
        """A page, with what every page shows: who is there, the CSRF token, the links home."""
        principal = principal_of(request)
        root = request.scope.get("root_path", "").rstrip("/")
        page = self.templates.get_template(template).render(
            request=request,
            principal=principal,
            csrf_field=FIELD,
            csrf_token=self.csrf.issue(principal),
            root=root,
            path=lambda name, **params: root + request.app.url_path_for(name, **params),
            **context,
        )
        return HTMLResponse(page, status_code=status)


def _database_url(settings: Settings) -> str:
    """The configured database, or the embedded one (migrated: nobody else will)."""
    url = database.resolve_database_url(settings)
    if not settings.database_url:
        database.migrate(url)
    return url
