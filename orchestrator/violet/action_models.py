"""What Violet answers to the after-submit requests: a bag's cancellation and its refund."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.violet.model_base import Loose, ScrubbedText

__all__ = ["CancellationStatus", "OrderCancellation", "Refund", "RefundStatus"]


class CancellationStatus:
    """Known values of ``OrderCancellation.status``."""

    CANCELED: Final = "CANCELED"
    PARTIALLY_CANCELED: Final = "PARTIALLY_CANCELED"
    CANCELLATION_FAILURE: Final = "CANCELLATION_FAILURE"


class RefundStatus:
    """Known values of ``Refund.status``."""

    PROCESSING: Final = "PROCESSING"
    COMPLETED: Final = "COMPLETED"
    CANCELED: Final = "CANCELED"
    PARTIALLY_COMPLETED: Final = "PARTIALLY_COMPLETED"
    FAILED: Final = "FAILED"
    EXTERNAL: Final = "EXTERNAL"


class OrderCancellation(BaseModel):
    """Answer of ``POST /orders/{id}/cancel`` and ``.../bags/{bag_id}/cancel`` (beta at Violet:
    kept loose). HTTP 202 whether it worked or not: a CANCELED here is a claim, not a fact."""

    model_config = ConfigDict(extra="allow")

    order_id: int | None = None
    app_id: int | None = None
    status: str | None = None
    message: ScrubbedText = None
    cancelled_bags: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("cancelled_bags", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class Refund(Loose):
    """Answer of ``POST /orders/{id}/bags/{bag_id}/refunds`` (HTTP 202): PROCESSING when taken,
    FAILED when Violet saw at once that it cannot be done. Taken is not done: a refund can still
    fail later, which only a read of the order (or a webhook) shows."""

    id: int | None = None
    order_id: int | None = None
    bag_id: int | None = None
    merchant_id: int | None = None
    amount: int | None = None
    currency: str | None = None
    status: str | None = None
    refund_reason: ScrubbedText = None
    message: ScrubbedText = None
    date_created: str | None = None
