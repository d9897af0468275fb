"""Per-merchant rate limits: a leaky bucket per merchant platform, answered as Violet's 429.

Violet passes each merchant platform's rate limit through unchanged (README §3.4): a Shopify
store holds 40 requests and leaks 2 a second. Every call that reaches a merchant's platform adds
one request to the bucket of each merchant in the cart; a call that would overflow any of them
is refused whole (429, nothing applied, no bucket filled), so a multi-merchant cart is as slow as
its busiest merchant. Off unless configured, so a sandbox without buckets behaves as before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.sandbox.catalog import SKUS
from orchestrator.sandbox.errors import SandboxError, rate_limited
from orchestrator.sandbox.validation import as_int

if TYPE_CHECKING:
    from orchestrator.sandbox.config import SandboxConfig
    from orchestrator.sandbox.state import SandboxState

DEFAULT_SIZE = 40
DEFAULT_LEAK_PER_S = 2.0

#: Operations that make Violet call the merchants' platforms (README §2.1: creating a cart
#: creates the external carts; price and delete "hit external platforms"; customer, addresses,
#: shipping rates and methods, payment and submit update or read the external checkout; cancel
#: and refund act on the platform's order). Reads of Violet's own record (get cart, order, bag,
#: refunds, search), login, token refresh and the payment intent refresh (Stripe only) do not.
PLATFORM_OPS: frozenset[str] = frozenset(
    {
        "create_cart",
        "delete_cart",
        "customer",
        "shipping_address",
        "billing_address",
        "shipping_available",
        "set_shipping",
        "price",
        "payment",
        "submit",
        "cancel_order",
        "cancel_bag",
        "refund_bag",
    }
)
#: Operations on one bag reach only that bag's merchant.
BAG_OPS: frozenset[str] = frozenset({"cancel_bag", "refund_bag"})

_BODY_KEYS = frozenset({"enabled", "size", "leak_per_s", "time_scale", "merchants"})
_MERCHANT_KEYS = frozenset({"size", "leak_per_s"})
_EPSILON = 1e-9


@dataclass(slots=True)
class Bucket:
    """One merchant's bucket; ``level`` is the requests in it as of ``at`` (bucket seconds)."""

    size: int
    leak_per_s: float
    level: float = 0.0
    at: float = 0.0
    admitted: int = 0
    rate_limited: int = 0

    def leak(self, now: float) -> None:
        self.level = max(0.0, self.level - (now - self.at) * self.leak_per_s)
        self.at = now

    def full(self) -> bool:
        return self.level + 1 > self.size + _EPSILON

    def wait(self) -> float:
        """Bucket seconds until one more request fits."""
        return max(0.0, (self.level + 1 - self.size) / self.leak_per_s)

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "leak_per_s": self.leak_per_s,
            "level": round(self.level, 3),
            "admitted": self.admitted,
            "rate_limited": self.rate_limited,
        }


@dataclass(slots=True)
class Settings:
    size: int = DEFAULT_SIZE
    leak_per_s: float = DEFAULT_LEAK_PER_S
    time_scale: float = 1.0
    """Bucket durations are real ones times this: 0.01 leaks 100 times faster and asks for a
    Retry-After 100 times shorter, keeping every ratio."""
    merchants: dict[int, tuple[int, float]] = field(default_factory=dict)
    """Per-merchant (size, leak_per_s), overriding the defaults."""


def _size(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise SandboxError(400, "invalid_field", f"{where} must be an integer in 1..1000000")
    return value


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1e6:
        raise SandboxError(400, "invalid_field", f"{where} must be a number > 0 and <= 1e6")
    return float(value)


def _object(value: Any, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SandboxError(400, "invalid_field", f"{where} must be an object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise SandboxError(
            400,
            "invalid_field",
            f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(allowed))})",
        )
    return value


def parse_settings(spec: dict[str, Any], base: Settings) -> Settings | None:
    """A ``POST /_sandbox/buckets`` body as settings (None: buckets off); omitted numbers are
    ``base``'s. Raises a 400 SandboxError naming the first bad field."""
    spec = _object(spec, "body", _BODY_KEYS)
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SandboxError(400, "invalid_field", "enabled must be true or false")
    if not enabled:
        return None
    size = _size(spec.get("size", base.size), "size")
    leak = _positive(spec.get("leak_per_s", base.leak_per_s), "leak_per_s")
    scale = _positive(spec.get("time_scale", base.time_scale), "time_scale")
    merchants: dict[int, tuple[int, float]] = {}
    overrides = spec.get("merchants", {})
    if not isinstance(overrides, dict):
        raise SandboxError(400, "invalid_field", "merchants must be an object")
    for key, value in overrides.items():
        try:
            merchant_id = int(key)
        except ValueError:
            raise SandboxError(
                400, "invalid_field", f"merchants: {key!r} is not a merchant id"
            ) from None
        where = f"merchants.{key}"
        one = _object(value, where, _MERCHANT_KEYS)
        merchants[merchant_id] = (
            _size(one.get("size", size), f"{where}.size"),
            _positive(one.get("leak_per_s", leak), f"{where}.leak_per_s"),
        )
    return Settings(size, leak, scale, merchants)


def configured_defaults(config: SandboxConfig) -> Settings:
    """The settings a ``POST /_sandbox/buckets`` body starts from: the sandbox's own."""
    return Settings(
        config.bucket_size or DEFAULT_SIZE, config.bucket_leak_per_s, config.bucket_time_scale
    )


def startup_settings(config: SandboxConfig) -> Settings | None:
    """The buckets a sandbox starts with (and returns to on reset): off unless configured."""
    if config.bucket_size is None:
        return None
    settings = configured_defaults(config)
    if settings.size < 1 or settings.leak_per_s <= 0 or settings.time_scale <= 0:
        raise ValueError("bucket_size must be >= 1, bucket_leak_per_s and bucket_time_scale > 0")
    return settings


class MerchantBuckets:
    """Every merchant's bucket under one set of settings; ``settings`` None means off."""

    def __init__(
        self, settings: Settings | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.buckets: dict[int, Bucket] = {}
        if settings is not None:
            for merchant_id in settings.merchants:
                self._bucket(merchant_id, self._now())

    @property
    def enabled(self) -> bool:
        return self.settings is not None

    def _now(self) -> float:
        assert self.settings is not None
        return self.clock() / self.settings.time_scale

    def _bucket(self, merchant_id: int, now: float) -> Bucket:
        bucket = self.buckets.get(merchant_id)
        if bucket is None:
            assert self.settings is not None
            size, leak = self.settings.merchants.get(
                merchant_id, (self.settings.size, self.settings.leak_per_s)
            )
            bucket = self.buckets[merchant_id] = Bucket(size, leak, at=now)
        else:
            bucket.leak(now)
        return bucket

    def admit(self, merchant_ids: Iterable[int]) -> list[int]:
        """Add one request to each merchant's bucket, or to none: the merchants whose bucket is
        full (empty list: admitted). Callers answer a refusal with :func:`refusal`."""
        if self.settings is None:
            return []
        now = self._now()
        buckets = {m: self._bucket(m, now) for m in merchant_ids}
        full = [m for m, b in buckets.items() if b.full()]
        for merchant_id, bucket in buckets.items():
            if full:
                bucket.rate_limited += 1 if merchant_id in full else 0
            else:
                bucket.level += 1
                bucket.admitted += 1
        return full

    def refusal(self, full: list[int]) -> SandboxError:
        """The 429 for a call refused by the buckets of ``full``: ``Retry-After`` is the wait
        until every one of them has room, rounded up to whole bucket seconds, then scaled."""
        assert self.settings is not None
        wait = max(self.buckets[m].wait() for m in full)
        seconds = math.ceil(wait - _EPSILON) * self.settings.time_scale
        return rate_limited(429, f"{seconds:g}")

    def to_json(self) -> dict[str, Any]:
        settings = self.settings
        if settings is None:
            return {"enabled": False, "merchants": {}}
        now = self._now()
        return {
            "enabled": True,
            "size": settings.size,
            "leak_per_s": settings.leak_per_s,
            "time_scale": settings.time_scale,
            "merchants": {str(m): self._bucket(m, now).to_json() for m in sorted(self.buckets)},
        }


def _sku_id(value: Any) -> int | None:
    try:
        return as_int(value, "sku_id")
    except SandboxError:
        return None


def merchants_of(
    state: SandboxState, op: str, cart_id: int | None, bag_id: int | None, body: Any
) -> list[int]:
    """The merchants whose platforms a call reaches, each once (none for a call that does not
    reach a platform or names no cart the sandbox has)."""
    if op not in PLATFORM_OPS:
        return []
    if op == "create_cart":
        skus = body.get("skus") if isinstance(body, dict) else None
        lines = skus if isinstance(skus, list) else []
        ids = [line.get("sku_id") for line in lines if isinstance(line, dict)]
        known = [sku for sku in map(_sku_id, ids) if sku in SKUS]
        return list(dict.fromkeys(SKUS[sku].merchant_id for sku in known))
    cart = state.carts.get(cart_id) if cart_id is not None else None
    if cart is None or cart.deleted:
        return []
    bags = [b for b in cart.bags if b.id == bag_id] if op in BAG_OPS else cart.bags
    return list(dict.fromkeys(b.merchant.id for b in bags))
