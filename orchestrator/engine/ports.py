"""The engine's view of the store: the only repository methods the runner and the lease keeper
call, so the step protocol can be driven against any store that keeps the same promises (the
PostgreSQL `Repository`, or the in-memory one the decision tests use).

The promises, which the signatures alone cannot say:

- `write` is fenced by `row.lease_epoch`: a row whose epoch moved on (another worker took it
  over) is left as it is, none of the events are stored, `row.event_seq` is put back, and
  `LeaseLost` is raised. A state change outside `orchestrator.states` is refused, and so is
  any change to a finished checkout; events are only ever appended.
- `write` reads the row when it is called, not when its coroutine runs: the runner may start
  the write behind the next Violet call and go on changing its copy meanwhile. So it is a plain
  method returning a coroutine, never an `async def` (which would read the row late).
- After `write` the row carries what was stored (version, due time, step start, lease expiry)
  and its local clock marks (records.py): the send gate counts on `local_step_start` and
  `local_lease_until`.
- `renew` extends only the leases `worker` still holds, and says which.
"""

from __future__ import annotations

import uuid
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.store.records import CheckoutRow, Event

if TYPE_CHECKING:
    from orchestrator.store.repository import Repository

__all__ = ["EngineStore"]


class EngineStore(Protocol):
    """What `Runner` and `LeaseKeeper` need of the store (see the module docstring)."""

    def write(
        self,
        row: CheckoutRow,
        events: Sequence[Event],
        *,
        worker: str,
        lease_seconds: float,
        keep_lease: bool,
        start_step: bool = False,
        send_seconds: float | None = None,
        due_in: float | None = None,
        terminal: bool = False,
    ) -> Coroutine[Any, Any, None]:
        """Write the leased row back with its events (fenced); await the result."""
        ...

    async def renew(
        self, ids: Sequence[uuid.UUID], *, worker: str, lease_seconds: float
    ) -> set[uuid.UUID]:
        """Extend the leases `worker` still holds among `ids`; the ids actually renewed."""
        ...


if TYPE_CHECKING:

    def _repository_is_an_engine_store(repo: Repository) -> EngineStore:
        # mypy --strict checks that the PostgreSQL repository satisfies the protocol.
        return repo
