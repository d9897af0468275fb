"""Serving `/metrics`: a Starlette route (the console's, or a host's app) and a small server of
its own for `orchestrator recover --metrics-port`.

Both read the database through the engine the process already holds: a scrape is one statement
(store/stats.py) on a pooled connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.errors import ConfigError
from orchestrator.metrics.collector import CONTENT_TYPE, process_metrics, scrape

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["metrics_route", "serving_metrics"]

EngineSource = Callable[[], Awaitable["AsyncEngine"]]


def metrics_route(engine: EngineSource, path: str = "/metrics") -> Route:
    """A GET route answering Prometheus' scrape; `engine` gives the engine to read through."""
    process_metrics()  # count from now on, not from the first scrape

    async def endpoint(request: Request) -> Response:
        return Response(await scrape(await engine()), media_type=CONTENT_TYPE)

    return Route(path, endpoint, methods=["GET"], name="metrics")


@contextlib.asynccontextmanager
async def serving_metrics(engine: AsyncEngine, host: str, port: int) -> AsyncIterator[int]:
    """Serve `/metrics` on host:port while the block runs; yields the bound port (0 picks one).

    The socket is bound first, so a port in use is a ConfigError naming it, before any work.
    """
    import uvicorn
    from starlette.applications import Starlette

    async def current() -> AsyncEngine:
        return engine

    app = Starlette(routes=[metrics_route(current)])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, reuse_port=False)
    except OSError as exc:
        raise ConfigError(
            f"--metrics-port: cannot listen on {host}:{port}: {exc.strerror}"
        ) from None

    class Quiet(uvicorn.Server):
        """Leaves the process's signal handlers to the recovery job (SIGTERM stops it)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = Quiet(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        await task
        sock.close()
