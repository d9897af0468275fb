"""The demo's local servers: an ASGI application served over HTTP from a daemon thread.

A thread rather than a child process: killing the demo can never orphan a server.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import uvicorn

from orchestrator.sandbox import SandboxConfig, create_app

_START_SECONDS = 15.0


@contextmanager
def served(app: Any, *, name: str, lifespan: Literal["on", "off"] = "off") -> Iterator[str]:
    """`app` on a free local port until the block ends; yields its root URL (no trailing /).

    With `lifespan` on, the application opens (and later closes) its resources in the server's
    own event loop, and a start-up it refuses raises here instead of serving.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        loop="asyncio",
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + _START_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {name} server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def served_sandbox(config: SandboxConfig) -> Iterator[str]:
    """The sandbox with `config`; yields its root URL."""
    with served(create_app(config), name="demo-sandbox") as root:
        yield root
