"""Violet's webhooks as the sandbox plays them: registrations, signed events, delivery faults.

Every bag move creates one event per registered webhook that wants its type; the body is the
whole Order as it is at that moment (README §5: "Body = full Order object"), signed like
Violet: ``X-Violet-Hmac`` = Base64(HMAC-SHA256(app secret, raw body)). Sending, retrying and
pausing live in ``sender.py``; this module only decides what is sent, to whom, and how it is
spoiled when a test armed a delivery fault.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from orchestrator.sandbox.errors import SandboxError
from orchestrator.sandbox.model import timestamp

ORDER_EVENTS: tuple[str, ...] = (
    "ORDER_ACCEPTED",
    "ORDER_UPDATED",
    "ORDER_COMPLETED",
    "ORDER_SHIPPED",
    "ORDER_DELIVERED",
    "ORDER_REFUNDED",
    "ORDER_RETURNED",
    "ORDER_CANCELED",
    "ORDER_CANCELLED",
)
MERCHANT_EVENTS: tuple[str, ...] = ("MERCHANT_DISABLED", "MERCHANT_ENABLED")
EVENT_TYPES = ORDER_EVENTS + MERCHANT_EVENTS

MAX_ATTEMPTS = 10
#: Seconds before attempt 2..10 (Violet: "up to 10 attempts over 24 h with back-off"; the exact
#: gaps are not published, these add up to ~23.8 h). Scaled by ``webhook_time_scale``.
RETRY_DELAYS: tuple[float, ...] = (60, 300, 600, 1800, 3600, 7200, 14400, 21600, 36000)

DUPLICATE = "duplicate"
REORDER = "reorder"
DELAY = "delay"
DROP = "drop"
BAD_SIGNATURE = "bad_signature"
DELIVERY_FAULTS = (DUPLICATE, REORDER, DELAY, DROP, BAD_SIGNATURE)

ATTEMPT_LOG_LIMIT = 100_000
_RESPONSE_LIMIT = 500


def sign(secret: str, body: bytes) -> str:
    """Violet's signature of a webhook body (README §5)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass(slots=True)
class Webhook:
    """One registered endpoint; ``events`` None means every event type."""

    id: int
    url: str
    events: frozenset[str] | None
    date_created: str
    status: str = "ACTIVE"  # ACTIVE | PAUSED | DISABLED
    paused_until: float = 0.0
    pause_rounds: int = 0
    failures: deque[float] = field(default_factory=deque)

    def wants(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "remote_endpoint": self.url,
            "events": sorted(self.events) if self.events is not None else None,
            "status": self.status,
            "pause_rounds": self.pause_rounds,
            "date_created": self.date_created,
        }


@dataclass(slots=True)
class Event:
    """Violet's webhook event record (README §5 "Event record"), one per webhook."""

    id: int
    webhook_id: int
    event_type: str
    entity_id: int
    body: bytes
    order_id: int | None
    bag_id: int | None
    date_created: str
    status: str = "CREATED"  # CREATED, IN_PROGRESS, SUCCEEDED, FAILED (+ DROPPED, sandbox only)
    attempts: int = 0
    status_code: int | None = None
    response: str | None = None
    faults: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "entity_id": self.entity_id,
            "event_type": self.event_type,
            "status": self.status,
            "status_code": self.status_code,
            "response": self.response,
            "attempts": self.attempts,
            "order_id": self.order_id,
            "bag_id": self.bag_id,
            "date_created": self.date_created,
            "faults": list(self.faults),
            "body": json.loads(self.body),
        }


@dataclass(slots=True)
class Delivery:
    """One copy of an event on its way (a duplicate fault makes two); retried on its own."""

    seq: int
    event: Event
    webhook: Webhook
    due: float
    """Monotonic time of the next attempt."""
    primary: bool = True
    held: bool = False
    bad_signature: bool = False
    attempts: int = 0


@dataclass(slots=True)
class DeliveryFault:
    id: int
    kind: str
    remaining: int
    event_type: str | None
    latency_ms: float
    fired: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "remaining": self.remaining,
            "event_type": self.event_type,
            "latency_ms": self.latency_ms,
            "fired": self.fired,
        }


def _fault_spec(spec: dict[str, Any], next_id: int) -> DeliveryFault:
    kind = spec.get("kind")
    if kind not in DELIVERY_FAULTS:
        raise SandboxError(
            400, "invalid_field", f"kind must be one of {', '.join(DELIVERY_FAULTS)}"
        )
    count = spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise SandboxError(400, "invalid_field", "count must be a positive integer")
    event_type = spec.get("event_type")
    if event_type is not None and event_type not in EVENT_TYPES:
        raise SandboxError(400, "invalid_field", f"event_type must be one of {EVENT_TYPES}")
    latency = spec.get("latency_ms", 1000.0)
    if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
        raise SandboxError(400, "invalid_field", "latency_ms must be a number >= 0")
    return DeliveryFault(next_id, str(kind), count, event_type, float(latency))


class WebhookHub:
    """What the sandbox has to send, and everything it tried; mutated inside one event loop."""

    def __init__(self, first_id: int = 1) -> None:
        self._ids = first_id
        self.generation = 0
        self.clear()

    def clear(self) -> None:
        """Forget registrations, events, pending deliveries, faults and attempts."""
        self.generation += 1
        self.webhooks: dict[int, Webhook] = {}
        self.events: dict[int, Event] = {}
        self.pending: list[Delivery] = []
        self.faults: list[DeliveryFault] = []
        self.attempts: deque[dict[str, Any]] = deque(maxlen=ATTEMPT_LOG_LIMIT)

    def _next_id(self) -> int:
        value = self._ids
        self._ids += 1
        return value

    # -- registration and faults ------------------------------------------------------------

    def register(self, url: str, events: list[str] | None) -> Webhook:
        if not url.startswith(("http://", "https://")):
            raise SandboxError(400, "invalid_field", "url must be an http(s) URL")
        if events is not None:
            unknown = sorted(set(events) - set(EVENT_TYPES))
            if unknown:
                raise SandboxError(400, "invalid_field", f"unknown event types: {unknown}")
        hook = Webhook(self._next_id(), url, frozenset(events) if events else None, timestamp())
        self.webhooks[hook.id] = hook
        return hook

    def webhook(self, webhook_id: int) -> Webhook:
        hook = self.webhooks.get(webhook_id)
        if hook is None:
            raise SandboxError(404, "webhook_not_found", f"webhook {webhook_id} not found")
        return hook

    def add_fault(self, spec: dict[str, Any]) -> DeliveryFault:
        fault = _fault_spec(spec, self._next_id())
        self.faults.append(fault)
        return fault

    def _draw_faults(self, event_type: str) -> list[DeliveryFault]:
        fired: list[DeliveryFault] = []
        for fault in self.faults:
            wanted = fault.event_type in (None, event_type) and fault.remaining > 0
            if wanted and all(f.kind != fault.kind for f in fired):
                fault.remaining -= 1
                fault.fired += 1
                fired.append(fault)
        self.faults = [f for f in self.faults if f.remaining > 0]
        return fired

    # -- emitting ----------------------------------------------------------------------------

    def emit(
        self,
        event_type: str,
        entity_id: int,
        payload: dict[str, Any],
        *,
        order_id: int | None = None,
        bag_id: int | None = None,
    ) -> list[Event]:
        """One event per webhook that wants `event_type`, queued for the sender."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        created = []
        for hook in self.webhooks.values():
            if not hook.wants(event_type):
                continue
            event = Event(
                self._next_id(), hook.id, event_type, entity_id, body, order_id, bag_id,
                timestamp(),
            )  # fmt: skip
            self.events[event.id] = event
            if hook.status == "DISABLED":
                event.status = "CANCELLED"
            else:
                self._queue(event, hook, self._draw_faults(event_type))
            created.append(event)
        return created

    def _queue(self, event: Event, hook: Webhook, faults: list[DeliveryFault]) -> None:
        kinds = {f.kind: f for f in faults}
        event.faults = sorted(kinds)
        if DROP in kinds:
            event.status = "DROPPED"
            return
        now = time.monotonic()
        due = now + kinds[DELAY].latency_ms / 1000 if DELAY in kinds else now
        delivery = Delivery(
            self._next_id(), event, hook, due,
            held=REORDER in kinds, bad_signature=BAD_SIGNATURE in kinds,
        )  # fmt: skip
        self.pending.append(delivery)
        if DUPLICATE in kinds:
            copy = Delivery(self._next_id(), event, hook, due, primary=False,
                            bad_signature=delivery.bad_signature)  # fmt: skip
            self.pending.append(copy)

    def resend(self, event_id: int) -> Event:
        """Violet's "resend event": the same body as a new event naming its source."""
        old = self.events.get(event_id)
        if old is None:
            raise SandboxError(404, "event_not_found", f"event {event_id} not found")
        hook = self.webhook(old.webhook_id)
        event = Event(
            self._next_id(), hook.id, old.event_type, old.entity_id, old.body, old.order_id,
            old.bag_id, timestamp(),
        )  # fmt: skip
        event.faults = [f"resend_of:{old.id}"]
        self.events[event.id] = event
        self.pending.append(Delivery(self._next_id(), event, hook, time.monotonic()))
        return event

    def release_held(self, webhook_id: int | None = None) -> int:
        """Let held (reordered) deliveries go now; how many were let go."""
        released = 0
        for delivery in self.pending:
            if delivery.held and webhook_id in (None, delivery.webhook.id):
                delivery.held = False
                delivery.due = time.monotonic()
                released += 1
        return released

    # -- what the sender asks ----------------------------------------------------------------

    def next_due(self, now: float) -> tuple[Delivery | None, float | None]:
        """The delivery to attempt now, else how long until one is due (None: nothing)."""
        best: Delivery | None = None
        wait: float | None = None
        for delivery in self.pending:
            if delivery.held:
                continue
            hook = delivery.webhook
            due = max(delivery.due, hook.paused_until) if hook.status == "PAUSED" else delivery.due
            if hook.status == "DISABLED":
                continue
            if due <= now:
                if best is None or (delivery.due, delivery.seq) < (best.due, best.seq):
                    best = delivery
            elif wait is None or due - now < wait:
                wait = due - now
        return best, (0.0 if best is not None else wait)

    def headers(self, delivery: Delivery, secret: str) -> dict[str, str]:
        event = delivery.event
        key = secret + "-not-the-app-secret" if delivery.bad_signature else secret
        headers = {
            "Content-Type": "application/json",
            "X-Violet-Hmac": sign(key, event.body),
            "X-Violet-Event-Id": str(event.id),
            "X-Violet-Webhook-Id": str(event.webhook_id),
            "X-Violet-Topic": event.event_type,
            "X-Violet-Entity-Length": str(len(event.body)),
        }
        if event.order_id is not None:
            headers["X-Violet-Order-Id"] = str(event.order_id)
        if event.bag_id is not None:
            headers["X-Violet-Bag-Id"] = str(event.bag_id)
        source = next((f for f in event.faults if f.startswith("resend_of:")), None)
        if source is not None:
            headers["X-Violet-Event-Id-Source"] = source.split(":", 1)[1]
        return headers

    def record(
        self,
        delivery: Delivery,
        started: float,
        status_code: int | None,
        error: str | None,
        response: str | None,
    ) -> bool:
        """Log one attempt and update the event; True when this copy is done with."""
        event = delivery.event
        delivery.attempts += 1
        event.attempts += 1
        ok = status_code is not None and 200 <= status_code < 300
        self.attempts.append(
            {
                "event_id": event.id,
                "webhook_id": event.webhook_id,
                "event_type": event.event_type,
                "order_id": event.order_id,
                "bag_id": event.bag_id,
                "attempt": delivery.attempts,
                "copy": "primary" if delivery.primary else "duplicate",
                "bad_signature": delivery.bad_signature,
                "status_code": status_code,
                "error": error,
                "ok": ok,
                "at": started,
                "duration_ms": round((time.time() - started) * 1000, 3),
            }
        )
        if delivery.primary or ok:
            event.status_code = status_code
            event.response = (response or error or "")[:_RESPONSE_LIMIT]
        done = ok or delivery.attempts >= MAX_ATTEMPTS
        if delivery.primary:
            event.status = "SUCCEEDED" if ok else ("FAILED" if done else "IN_PROGRESS")
        if done:
            self.pending.remove(delivery)
        if delivery.attempts == 1:
            self._release_after(delivery)
        return done

    def _release_after(self, sent: Delivery) -> None:
        """A reordered delivery goes right after the next one to its webhook was tried."""
        for delivery in self.pending:
            if delivery.held and delivery.webhook is sent.webhook and delivery is not sent:
                delivery.held = False
                delivery.due = time.monotonic()
                return
