"""Fault injection: which of the next calls to an operation fail, and how.

A fault fires on the next ``count`` matching calls, or at random with ``probability`` (from
the sandbox's seeded RNG, so a run with the same seed and call order fails the same way).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from orchestrator.sandbox.errors import SandboxError

OPS: tuple[str, ...] = (
    "login",
    "refresh",
    "create_cart",
    "get_cart",
    "delete_cart",
    "customer",
    "shipping_address",
    "billing_address",
    "shipping_available",
    "set_shipping",
    "price",
    "payment",
    "payment_update",
    "submit",
    "get_order",
    "search_orders",
    "cancel_order",
)
#: Violet's other after-submit endpoints (acting.py): faults target them like any other op.
AFTER_SUBMIT_OPS: tuple[str, ...] = ("cancel_bag", "refund_bag", "get_bag", "get_refunds")
#: The endpoints Violet answers 202 whatever happened, where a ``silent_failure`` can hide.
SILENTLY_FAILING_OPS: tuple[str, ...] = ("cancel_order", "cancel_bag", "refund_bag")

ERROR = "error"
RATE_LIMIT = "rate_limit"
LATENCY = "latency"
TIMEOUT = "timeout"
DROP_BEFORE_APPLY = "drop_before_apply"
DROP_AFTER_APPLY = "drop_after_apply"
DELAY_AFTER_APPLY = "delay_after_apply"
HUGE_ANSWER = "huge_answer"
CART_ERROR = "cart_error"
SILENT_FAILURE = "silent_failure"

KINDS = (
    ERROR,
    RATE_LIMIT,
    LATENCY,
    TIMEOUT,
    DROP_BEFORE_APPLY,
    DROP_AFTER_APPLY,
    DELAY_AFTER_APPLY,
    HUGE_ANSWER,
    CART_ERROR,
    SILENT_FAILURE,
)
#: The longest `message` a fault may carry (what a hostile Violet might echo back).
MAX_MESSAGE = 10_000

_DEFAULT_LATENCY_MS = {LATENCY: 1000.0, TIMEOUT: 30000.0, DELAY_AFTER_APPLY: 30000.0}
_DEFAULT_SIZE_BYTES = 64 * 1024 * 1024
_MAX_SIZE_BYTES = 8 * 1024 * 1024 * 1024


@dataclass(slots=True)
class Fault:
    id: int
    op: str
    kind: str
    remaining: int | None
    """Firings left; None means unlimited (probability-only faults)."""
    probability: float | None
    status: int
    latency_ms: float
    retry_after: float | str | None
    """A number is sent as delta-seconds; a string is sent verbatim (any header a merchant or
    proxy might relay: an HTTP date, 1e15, inf)."""
    size_bytes: int = _DEFAULT_SIZE_BYTES
    """How long a `huge_answer` is."""
    message: str | None = None
    """Text of the answer: an `error`'s message (its whole body with `content_type`), a
    `cart_error`'s errors[] entry."""
    content_type: str | None = None
    fired: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "op": self.op,
            "kind": self.kind,
            "remaining": self.remaining,
            "probability": self.probability,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "retry_after": self.retry_after,
            "size_bytes": self.size_bytes,
            "message": self.message,
            "content_type": self.content_type,
            "fired": self.fired,
        }


def _number(spec: dict[str, Any], key: str, minimum: float, maximum: float) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SandboxError(400, "invalid_field", f"{key} must be a number")
    if not minimum <= value <= maximum:
        raise SandboxError(400, "invalid_field", f"{key} must be between {minimum} and {maximum}")
    return float(value)


def _retry_after(spec: dict[str, Any]) -> float | str | None:
    value = spec.get("retry_after")
    if isinstance(value, str):
        if len(value) > 1000 or not value.isprintable() or not value.isascii():
            raise SandboxError(
                400, "invalid_field", "retry_after text must be printable ASCII, <= 1000 chars"
            )
        return value
    return _number(spec, "retry_after", 0.0, 86400.0)


def _text(spec: dict[str, Any], key: str, longest: int) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > longest:
        raise SandboxError(400, "invalid_field", f"{key} must be a string of at most {longest}")
    return value


class FaultRegistry:
    """The armed faults, in the order they were added."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.faults: list[Fault] = []
        self._next_id = 1

    def add(self, spec: dict[str, Any]) -> Fault:
        op = spec.get("op")
        every_op = OPS + AFTER_SUBMIT_OPS
        if op != "*" and op not in every_op:
            raise SandboxError(
                400, "invalid_field", f"op must be '*' or one of {', '.join(every_op)}"
            )
        kind = spec.get("kind")
        if kind not in KINDS:
            raise SandboxError(400, "invalid_field", f"kind must be one of {', '.join(KINDS)}")
        if kind == SILENT_FAILURE and op not in SILENTLY_FAILING_OPS:
            raise SandboxError(
                400,
                "invalid_field",
                f"a silent_failure fault needs op one of {', '.join(SILENTLY_FAILING_OPS)}",
            )
        probability = _number(spec, "probability", 0.0, 1.0)
        count = spec.get("count")
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 1
        ):
            raise SandboxError(400, "invalid_field", "count must be an integer >= 1")
        if count is None and probability is None:
            count = 1
        default_status = 429 if kind == RATE_LIMIT else 503
        status = spec.get("status", default_status)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise SandboxError(400, "invalid_field", "status must be an integer in 400..599")
        latency = _number(spec, "latency_ms", 0.0, 3_600_000.0)
        size = spec.get("size_bytes", _DEFAULT_SIZE_BYTES)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= _MAX_SIZE_BYTES:
            raise SandboxError(
                400, "invalid_field", f"size_bytes must be an integer in 1..{_MAX_SIZE_BYTES}"
            )
        message = _text(spec, "message", MAX_MESSAGE)
        content_type = _text(spec, "content_type", 100)
        if kind == CART_ERROR and message is None:
            raise SandboxError(400, "invalid_field", "a cart_error fault needs a message")
        fault = Fault(
            id=self._next_id,
            op=str(op),
            kind=str(kind),
            remaining=count,
            probability=probability,
            status=status,
            latency_ms=latency if latency is not None else _DEFAULT_LATENCY_MS.get(kind, 0.0),
            retry_after=_retry_after(spec),
            size_bytes=size,
            message=message,
            content_type=content_type,
        )
        self._next_id += 1
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def draw(self, op: str) -> tuple[float, Fault | None]:
        """For one call: extra latency from latency faults, and the one fault deciding its fate.

        Latency faults add up; of the other kinds only the first that fires is used (the
        others are not consumed).
        """
        extra_ms = 0.0
        outcome: Fault | None = None
        spent = False
        for fault in self.faults:
            if fault.op != op and fault.op != "*":
                continue
            if fault.kind != LATENCY and outcome is not None:
                continue
            if fault.probability is not None and self.rng.random() >= fault.probability:
                continue
            fault.fired += 1
            if fault.remaining is not None:
                fault.remaining -= 1
                spent = spent or fault.remaining == 0
            if fault.kind == LATENCY:
                extra_ms += fault.latency_ms
            else:
                outcome = fault
        if spent:
            self.faults = [f for f in self.faults if f.remaining != 0]
        return extra_ms, outcome
