"""The operators' web console: checkouts, their timelines, an overview, and audited actions.

A server-rendered ASGI application (Starlette, Jinja2 templates with autoescape, a little CSS
and JavaScript shipped in this package; nothing fetched at run time). `orchestrator console`
serves it; a host mounts `create_app(settings, engine=...)`. See docs/console.md.
"""

from orchestrator.console.app import create_app, routes
from orchestrator.console.state import ConsoleState

__all__ = ["ConsoleState", "create_app", "routes"]
