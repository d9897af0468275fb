"""Sandbox configuration: the credentials it accepts and the knobs a test may turn at runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_APP_ID = 10000
DEFAULT_APP_SECRET = "sandbox-secret"  # a published test credential
DEFAULT_USERNAME = "sandbox@example.com"
DEFAULT_PASSWORD = "sandbox-password"  # a published test credential

SANDBOX_CREDENTIALS: dict[str, Any] = {
    "app_id": DEFAULT_APP_ID,
    "app_secret": DEFAULT_APP_SECRET,
    "username": DEFAULT_USERNAME,
    "password": DEFAULT_PASSWORD,
}
"""The defaults every sandbox accepts, so a demo or test can log in without configuration."""


@dataclass
class SandboxConfig:
    """What a sandbox accepts and how it behaves; latency and token TTL may change at runtime."""

    app_id: int = DEFAULT_APP_ID
    app_secret: str = DEFAULT_APP_SECRET
    username: str = DEFAULT_USERNAME
    password: str = DEFAULT_PASSWORD
    token_ttl_seconds: float = 86400.0
    latency_ms: float = 0.0
    #: Each call's base latency is drawn from [latency_ms - jitter, latency_ms + jitter] (>= 0).
    latency_jitter_ms: float = 0.0
    seed: int = 0
    #: How long a submitted order stays PROCESSING (bags SUBMITTED, payment AUTHORIZED) before
    #: its merchants accept or reject its bags; 0 settles them within the submit call.
    processing_ms: float = 0.0
    #: Where a decline sits in Violet's answer: "error" (the error body's type), "errors_entry"
    #: (decline_code in a 400's errors[]) or "cart_errors" (in a 200 Order's errors[]).
    decline_shape: str = "error"
    #: Where a declining card is refused: "submit", or "payment" (when it is applied).
    decline_step: str = "submit"
    #: The first cart (order) id it hands out. Violet never reuses an id; a fresh sandbox in
    #: front of a database that outlived the last one must start above the ids stored there.
    first_cart_id: int = 80000
    #: The first webhook event id it hands out (its webhooks, faults and deliveries share the
    #: counter). The inbox keys events by id: a fresh sandbox in front of an inbox that outlived
    #: the last one must start above the ids stored there, or its events read as redeliveries.
    first_event_id: int = 1
    #: Webhook retry gaps are Violet's (10 attempts over ~24 h) times this factor, and so are
    #: the pause windows of a failing webhook; tests compress them (e.g. 0.0001).
    webhook_time_scale: float = 1.0
    #: How long a receiver may take to answer one delivery before it counts as failed.
    webhook_timeout_seconds: float = 10.0
    #: The event type sent for a canceled bag: the API enum's "ORDER_CANCELED" or the guide's
    #: "ORDER_CANCELLED" (Violet uses both spellings).
    canceled_event: str = "ORDER_CANCELED"
    #: Each merchant platform's rate limit as a leaky bucket of this many requests (Violet
    #: relays the platform's 429); None leaves rate limits off. Changeable at runtime on
    #: ``/_sandbox/buckets``, per merchant too.
    bucket_size: int | None = None
    #: Requests each bucket leaks per second (a Shopify store: 40 leaking 2/s).
    bucket_leak_per_s: float = 2.0
    #: Bucket durations (leak, Retry-After) are real ones times this; tests compress them.
    bucket_time_scale: float = 1.0

    def __repr__(self) -> str:
        # The app secret and password never appear in logs, even for the sandbox.
        return (
            f"SandboxConfig(app_id={self.app_id}, username={self.username!r}, "
            f"token_ttl_seconds={self.token_ttl_seconds}, latency_ms={self.latency_ms}, "
            f"latency_jitter_ms={self.latency_jitter_ms}, "
            f"processing_ms={self.processing_ms}, decline_shape={self.decline_shape!r}, "
            f"decline_step={self.decline_step!r}, seed={self.seed}, "
            f"webhook_time_scale={self.webhook_time_scale}, bucket_size={self.bucket_size}, "
            f"bucket_leak_per_s={self.bucket_leak_per_s}, "
            f"bucket_time_scale={self.bucket_time_scale})"
        )
