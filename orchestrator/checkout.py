"""What callers get back: read-only views of a checkout, of its audit events and of a bulk retry,
JSON-ready."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator import states
from orchestrator.store.records import CheckoutRow
from orchestrator.violet.statuses import unsettled_bag_status

#: Retention's marker in a pruned event's `detail` (migration 0014): when, and what went.
PRUNED_AT = "pruned_at"
PRUNED = "pruned"


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a Z, the one time format of every JSON document we print."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Checkout:
    """A checkout as the caller sees it. `handout` holds secrets for the shopper's front end
    (the payment intent client secret) when one was just obtained; it is never stored."""

    id: uuid.UUID
    app_order_id: str
    violet_order_id: int | None
    state: str
    currency: str
    payment_kind: str
    sub_total: int | None
    shipping_total: int | None
    tax_total: int | None
    discount_total: int | None
    total: int | None
    bags: list[dict[str, Any]]
    violet_status: str | None
    pending_step: str | None
    in_flight: bool
    attempt: int
    next_attempt_at: datetime | None
    lease_owner: str | None
    waiting_reason: str | None
    last_error: dict[str, Any] | None
    created_at: datetime | None
    updated_at: datetime | None
    finished_at: datetime | None
    handout: dict[str, str] = field(default_factory=dict, repr=False)
    #: The drive that returned this refused our credentials at Violet (never stored: a stored
    #: `last_error` of class config may predate credentials fixed since).
    credentials_refused: bool = False

    @classmethod
    def from_row(
        cls,
        row: CheckoutRow,
        handout: dict[str, str] | None = None,
        *,
        credentials_refused: bool = False,
    ) -> Checkout:
        return cls(
            id=row.id,
            app_order_id=row.app_order_id,
            violet_order_id=row.violet_order_id,
            state=row.state,
            currency=row.currency,
            payment_kind=row.payment_kind,
            sub_total=row.sub_total,
            shipping_total=row.shipping_total,
            tax_total=row.tax_total,
            discount_total=row.discount_total,
            total=row.total,
            bags=list(row.bags),
            violet_status=row.violet_status,
            pending_step=row.pending_step,
            in_flight=row.in_flight,
            attempt=row.attempt,
            next_attempt_at=row.next_attempt_at,
            lease_owner=row.lease_owner,
            waiting_reason=row.waiting_reason,
            last_error=row.last_error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            handout=dict(handout or {}),
            credentials_refused=credentials_refused,
        )

    @property
    def is_terminal(self) -> bool:
        return self.state in states.TERMINAL_STATES

    @property
    def is_waiting(self) -> bool:
        return self.state in states.WAITING_STATES

    @property
    def partially_accepted(self) -> bool:
        statuses = {bag.get("status") for bag in self.bags}
        return self.state == states.SUBMITTED and "REJECTED" in statuses

    @property
    def unsettled_bags(self) -> list[Any]:
        """Bags recorded before their merchant answered (SUBMITTED when the reads ran out)."""
        if self.state != states.SUBMITTED:
            return []
        return [bag.get("bag_id") for bag in self.bags if unsettled_bag_status(bag.get("status"))]

    def to_json(self) -> dict[str, Any]:
        """Stable field names; times in ISO-8601 UTC; no secrets (the handout is left out)."""
        return {
            "id": str(self.id),
            "app_order_id": self.app_order_id,
            "violet_order_id": self.violet_order_id,
            "state": self.state,
            "violet_status": self.violet_status,
            "partially_accepted": self.partially_accepted,
            "currency": self.currency,
            "payment_kind": self.payment_kind,
            "totals": {
                "sub_total": self.sub_total,
                "shipping_total": self.shipping_total,
                "tax_total": self.tax_total,
                "discount_total": self.discount_total,
                "total": self.total,
            },
            "bags": [
                {
                    "bag_id": bag.get("bag_id"),
                    "merchant_id": bag.get("merchant_id"),
                    "merchant_name": bag.get("merchant_name"),
                    "status": bag.get("status"),
                    "financial_status": bag.get("financial_status"),
                    "total": bag.get("total"),
                }
                for bag in self.bags
            ],
            "pending_step": self.pending_step,
            "in_flight": self.in_flight,
            "attempt": self.attempt,
            "next_attempt_at": iso(self.next_attempt_at),
            "lease_owner": self.lease_owner,
            "waiting_reason": self.waiting_reason,
            "last_error": self.last_error,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "finished_at": iso(self.finished_at),
        }


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of a checkout's audit trail."""

    checkout_id: uuid.UUID
    seq: int
    at: datetime
    kind: str
    from_state: str | None
    to_state: str | None
    step: str | None
    attempt: int | None
    worker: str | None
    http_method: str | None
    http_path: str | None
    http_status: int | None
    latency_ms: float | None
    request_body: dict[str, Any] | None
    response_body: dict[str, Any] | None
    error_class: str | None
    error_type: str | None
    error_message: str | None
    detail: dict[str, Any] | None

    @classmethod
    def from_mapping(cls, row: dict[str, Any]) -> AuditEvent:
        values: dict[str, Any] = {name: row.get(name) for name in cls.__dataclass_fields__}
        return cls(**values)

    @property
    def pruned_at(self) -> datetime | None:
        """When retention removed this event's bulky parts (`orchestrator prune`: Violet's
        request and response summaries, long detail values); None while it is whole."""
        stamp = self.detail.get(PRUNED_AT) if isinstance(self.detail, dict) else None
        if not isinstance(stamp, str):
            return None
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            return None

    @property
    def pruned(self) -> list[str]:
        """What retention removed (`request_body`, `response_body`, `detail.<key>`)."""
        found = self.detail.get(PRUNED) if isinstance(self.detail, dict) else None
        return [str(part) for part in found] if isinstance(found, list) else []

    def detail_kept(self) -> dict[str, Any]:
        """`detail` without retention's marker: what the event itself recorded."""
        if not isinstance(self.detail, dict):
            return {}
        if self.pruned_at is None:
            return dict(self.detail)
        return {k: v for k, v in self.detail.items() if k not in (PRUNED_AT, PRUNED)}

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["checkout_id"] = str(self.checkout_id)
        data["at"] = iso(self.at)
        data["pruned_at"] = iso(self.pruned_at)
        return data


@dataclass(frozen=True, slots=True)
class RetryCandidate:
    """One failed checkout a bulk retry looked at: where it failed, and why it is refused (None:
    retried, or with a dry run, would be)."""

    id: uuid.UUID
    app_order_id: str
    error_class: str | None
    error_type: str | None
    #: The state it failed from, where a retry reopens it (None: no failure in its trail).
    failed_in: str | None
    #: The step that failed, in flight again after a retry.
    step: str | None
    refused: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["id"] = str(self.id)
        return data


@dataclass(frozen=True, slots=True)
class RetryReport:
    """What a bulk retry did, or with `dry_run` would do (then nothing changed): the checkouts
    reopened, due now for the recovery job (which reads Violet before redoing anything), and
    those refused, each with why."""

    dry_run: bool
    retried: tuple[RetryCandidate, ...]
    refused: tuple[RetryCandidate, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "retried": [c.to_json() for c in self.retried],
            "refused": [c.to_json() for c in self.refused],
        }
