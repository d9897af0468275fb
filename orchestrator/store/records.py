"""Plain records exchanged between the store and the layers above it (no SQL, no HTTP here)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator import states
from orchestrator.clock import local_clock

TOTAL_FIELDS = ("sub_total", "shipping_total", "tax_total", "discount_total", "total")


@dataclass(slots=True)
class CheckoutRow:
    """One `checkouts` row; while a worker holds its lease this copy is the truth it writes back."""

    id: uuid.UUID
    app_order_id: str
    state: str
    request: dict[str, Any]
    payment_kind: str
    currency: str
    violet_order_id: int | None = None
    version: int = 0
    pending_step: str | None = None
    in_flight: bool = False
    step_no: int = 0
    attempt: int = 0
    next_attempt_at: datetime | None = None
    step_started_at: datetime | None = None
    #: The last instant the step's request may leave, by its sender's send window (NULL: not
    #: stored); set with `step_started_at`, on the database's clock.
    step_send_by: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    lease_epoch: int = 0
    recoveries: int = 0
    event_seq: int = 0
    sub_total: int | None = None
    shipping_total: int | None = None
    tax_total: int | None = None
    discount_total: int | None = None
    total: int | None = None
    bags: list[dict[str, Any]] = field(default_factory=list)
    violet_status: str | None = None
    waiting_reason: str | None = None
    last_error: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    # Never stored (not columns). The first two are instants on `orchestrator.clock.local_clock`,
    # taken just before this process's statement that set them, so they never run ahead of the
    # database's `now()` in it.
    #: At or before the database's `step_started_at` (set by an insert or a write starting a step).
    local_step_start: float | None = None
    #: Until then the lease is surely ours (None: not held, or held since an unknown time).
    local_lease_until: float | None = None
    #: The database's `now()` as read with this row (a claim, an insert or a plain read) and the
    #: local clock's reading once that answer had arrived: the database's time now is at least
    #: the first plus the local time elapsed since the second (a step's age is never over-counted).
    local_db_now: tuple[datetime, float] | None = None

    @classmethod
    def registered(
        cls,
        *,
        app_order_id: str,
        request: dict[str, Any],
        payment_kind: str,
        currency: str,
        first_step: str,
        run: bool,
    ) -> CheckoutRow:
        """A new checkout before its insert: initial state, its first step in flight if `run`."""
        return cls(
            id=uuid.uuid4(),
            app_order_id=app_order_id,
            state=states.INITIAL,
            request=request,
            payment_kind=payment_kind,
            currency=currency,
            pending_step=first_step,
            in_flight=run,
            attempt=1 if run else 0,
        )

    @classmethod
    def from_mapping(cls, row: Any) -> CheckoutRow:
        return cls(**{name: row[name] for name in _ROW_FIELDS})

    def step_age(self) -> float:
        """Seconds since `step_started_at` on the database's clock (inf: no start stored).

        Counted from the database's `now()` read with the row plus the time elapsed since on
        the local clock, so neither a host wall clock that disagrees with the database's nor
        one that steps while a drive runs changes it. A row read without the database's time
        (never the case for a row from the repository) falls back to the host's wall clock.
        """
        started = self.step_started_at
        if started is None:
            return float("inf")
        if self.local_db_now is None:
            return (datetime.now(UTC) - started).total_seconds()
        db_now, read_at = self.local_db_now
        return (db_now - started).total_seconds() + (local_clock() - read_at)

    @property
    def needs_shipping(self) -> bool:
        return any(bag.get("needs_shipping", True) for bag in self.bags)


_ROW_FIELDS = tuple(
    name for name in CheckoutRow.__dataclass_fields__ if not name.startswith("local_")
)
ROW_COLUMNS = ", ".join(_ROW_FIELDS)


@dataclass(slots=True)
class Event:
    """One audit-trail entry about to be written (seq is assigned by the writer)."""

    kind: str
    from_state: str | None = None
    to_state: str | None = None
    step: str | None = None
    attempt: int | None = None
    http_method: str | None = None
    http_path: str | None = None
    http_status: int | None = None
    latency_ms: float | None = None
    request_body: dict[str, Any] | None = None
    response_body: dict[str, Any] | None = None
    error_class: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """Where a failed checkout failed, from its last transition into `failed` in its audit trail:
    the state it left and the step that was pending (what a retry reopens)."""

    state: str
    step: str | None
