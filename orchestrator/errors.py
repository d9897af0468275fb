"""The library's own exception tree: each says what the caller can do about it."""

from __future__ import annotations


class OrchestratorError(Exception):
    """Root of every error the orchestrator raises on purpose."""


class ConfigError(OrchestratorError):
    """A setting is missing or malformed; the message names it."""


class CheckoutNotFound(OrchestratorError):
    """No checkout has this id or app_order_id."""


class CheckoutBusy(OrchestratorError):
    """Another worker holds this checkout's lease; try again later (never a second Violet call)."""


class IllegalTransition(OrchestratorError):
    """The state graph does not allow this move from the checkout's current state."""


class LeaseLost(OrchestratorError):
    """Our lease was taken over (fencing token moved on); our late write was refused."""


class DatabaseUnavailable(OrchestratorError):
    """The orchestrator's own database cannot be reached; nothing was marked failed."""


class SchemaNotMigrated(OrchestratorError):
    """The database has no (or an old) orchestrator schema; run `orchestrator db upgrade`."""
