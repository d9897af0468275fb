"""Everything one sandbox remembers: carts, id sequences, counters, the call log, the faults.

All of it is mutated synchronously inside one event loop, so each Violet call is atomic
without locks, like a single database transaction at Violet.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import replace
from typing import Any

from orchestrator.sandbox.auth import TokenAuthority
from orchestrator.sandbox.buckets import MerchantBuckets, startup_settings
from orchestrator.sandbox.catalog import SKUS
from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.faults import FaultRegistry
from orchestrator.sandbox.model import Bag, Cart, render_cart
from orchestrator.sandbox.sender import Sender
from orchestrator.sandbox.webhooks import WebhookHub

CALL_LOG_LIMIT = 100_000


class Sequence:
    """Monotonic ids; never reset, so an id from before a reset cannot hit a new cart."""

    def __init__(self, start: int) -> None:
        self._next = start

    def __call__(self) -> int:
        value = self._next
        self._next += 1
        return value


class SandboxState:
    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = replace(config) if config is not None else SandboxConfig()
        self.auth = TokenAuthority(self.config)
        self.rng = random.Random(self.config.seed)
        self.faults = FaultRegistry(self.rng)
        self.cart_ids = Sequence(self.config.first_cart_id)
        self.bag_ids = Sequence(600000)
        self.order_sku_ids = Sequence(900000)
        self.error_ids = Sequence(7000)
        self.transaction_ids = Sequence(25000)
        self.shipping_record_ids = Sequence(55000)
        self.payment_method_ids = Sequence(15000)
        self.external_ids = Sequence(5435463100000)
        self.refund_ids = Sequence(41000)
        self.webhooks = WebhookHub(self.config.first_event_id)
        self.sender = Sender(self)
        self._clear()

    def _clear(self) -> None:
        self.carts: dict[int, Cart] = {}
        self.by_app_order_id: dict[str, list[int]] = {}
        self.stock: dict[int, int | None] = {sku.id: sku.stock for sku in SKUS.values()}
        self.carts_created = 0
        self.submits: Counter[int] = Counter()
        self.duplicate_submits: Counter[int] = Counter()
        self.deleted_carts: list[int] = []
        self.calls_by_op: Counter[str] = Counter()
        self.faults_fired: Counter[str] = Counter()
        self.calls: deque[dict[str, Any]] = deque(maxlen=CALL_LOG_LIMIT)
        #: Orders still PROCESSING: cart id -> monotonic time at which their bags settle.
        self.processing: dict[int, float] = {}
        #: Calls to Violet's cancel and refund endpoints: order or bag id -> calls.
        self.order_cancels: Counter[int] = Counter()
        self.bag_cancels: Counter[int] = Counter()
        self.bag_refunds: Counter[int] = Counter()
        #: Merchants switched off on the control surface (MERCHANT_DISABLED sent).
        self.disabled_merchants: set[int] = set()
        #: Each merchant platform's rate limit, as the sandbox started (off unless configured).
        self.buckets = MerchantBuckets(startup_settings(self.config))

    def reset(self) -> None:
        """Forget carts, orders, faults, counters and calls, empty the merchants' buckets (back to
        the sandbox's startup bucket settings); keep config and issued tokens."""
        self._clear()
        self.faults.clear()
        self.webhooks.clear()
        self.rng.seed(self.config.seed)

    def stats(self) -> dict[str, Any]:
        return {
            "carts_created": self.carts_created,
            "carts_by_app_order_id": {k: list(v) for k, v in self.by_app_order_id.items()},
            "submits": {str(k): v for k, v in self.submits.items()},
            "duplicate_submits": {str(k): v for k, v in self.duplicate_submits.items()},
            "deleted_carts": list(self.deleted_carts),
            "calls_by_op": dict(self.calls_by_op),
            "faults_fired": dict(self.faults_fired),
            "order_cancels": {str(k): v for k, v in self.order_cancels.items()},
            "bag_cancels": {str(k): v for k, v in self.bag_cancels.items()},
            "bag_refunds": {str(k): v for k, v in self.bag_refunds.items()},
        }

    def emit(self, event_type: str, cart: Cart, bag: Bag | None = None) -> None:
        """Tell every interested webhook about the order as it is now (nothing when none)."""
        if not self.webhooks.webhooks:
            return
        bag_id = bag.id if bag is not None else None
        payload = render_cart(cart)
        if self.webhooks.emit(event_type, cart.id, payload, order_id=cart.id, bag_id=bag_id):
            self.sender.kick()

    def emit_merchant(self, event_type: str, payload: dict[str, Any]) -> None:
        if self.webhooks.webhooks and self.webhooks.emit(event_type, payload["id"], payload):
            self.sender.kick()
