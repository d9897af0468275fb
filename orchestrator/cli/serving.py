"""Serving an ASGI app from a command (the webhook receiver, the console): a bound socket, and a
uvicorn server that prints one line once the app has started, which scripts and tests wait for
(with `--port 0`, it names the port the system picked). Uvicorn loads when a server is made."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn

__all__ = ["announcing_server", "bind"]


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets whose proto says TCP.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def announcing_server(config: uvicorn.Config, line: str) -> uvicorn.Server:
    """A server that prints `line` once its lifespan start-up succeeded."""
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:  # the lifespan start-up (pool, schema check) succeeded
                print(line, flush=True)

    return AnnouncingServer(config)
