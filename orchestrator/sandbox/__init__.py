"""A local stand-in for Violet's sandbox API, with fault injection (see docs/sandbox.md).

Use it in-process (``asgi_transport(create_app())``) or over HTTP (``SandboxServer``,
``python -m orchestrator.sandbox``).
"""

from orchestrator.sandbox.app import create_app
from orchestrator.sandbox.client import SandboxControl
from orchestrator.sandbox.config import SANDBOX_CREDENTIALS, SandboxConfig
from orchestrator.sandbox.server import SandboxServer, serve
from orchestrator.sandbox.transport import asgi_transport

__all__ = [
    "SANDBOX_CREDENTIALS",
    "SandboxConfig",
    "SandboxControl",
    "SandboxServer",
    "asgi_transport",
    "create_app",
    "serve",
]
