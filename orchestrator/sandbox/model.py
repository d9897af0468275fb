"""The sandbox's in-memory carts, and how they are rendered as Violet Order JSON.

Rendering follows the saved sandbox samples (README samples/): fields Violet leaves null are
omitted, e.g. an unpriced cart carries ``sub_total`` but no ``total``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.sandbox.catalog import (
    CURRENCIES,
    DIGITAL,
    PHYSICAL,
    STRIPE_KEY,
    CardOutcome,
    Merchant,
    Sku,
)

IN_PROGRESS = "IN_PROGRESS"
PROCESSING = "PROCESSING"
COMPLETED = "COMPLETED"
REQUIRES_ACTION = "REQUIRES_ACTION"
CANCELED = "CANCELED"

USER_ID = 10658
DEVELOPER_ID = 10454
"""The sandbox app owner's user and developer ids (same values as Violet's samples)."""


def timestamp(at: datetime | None = None) -> str:
    """Violet's date format in the samples: ``2023-08-31T17:55:36.000Z``."""
    at = at or datetime.now(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def remorse_end(at: datetime) -> str:
    return timestamp(at + timedelta(days=30))


@dataclass(slots=True, eq=False)
class OrderSku:
    id: int
    sku: Sku
    quantity: int
    price: int
    available: bool
    status: str = IN_PROGRESS

    @property
    def line_price(self) -> int:
        return self.price * self.quantity


@dataclass(slots=True, eq=False)
class Bag:
    id: int
    merchant: Merchant
    date_created: str
    remorse_period_ends: str
    skus: list[OrderSku] = field(default_factory=list)
    shipping_method: dict[str, Any] | None = None
    taxes: list[dict[str, Any]] = field(default_factory=list)
    tax_total: int = 0
    status: str = IN_PROGRESS
    financial_status: str = "UNPAID"
    fulfillment_status: str = "PROCESSING"
    external_id: str | None = None
    transactions: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    """Violet Refund records (GET /orders/{id}/bags/{bag_id}/refunds), failed ones included."""

    @property
    def refunded(self) -> int:
        return sum(r["amount"] for r in self.refunds if r["status"] == "COMPLETED")

    @property
    def needs_shipping(self) -> bool:
        return any(s.sku.product_type == PHYSICAL for s in self.skus)

    @property
    def sub_total(self) -> int:
        return sum(s.line_price for s in self.skus)

    @property
    def physical_sub_total(self) -> int:
        return sum(s.line_price for s in self.skus if s.sku.product_type != DIGITAL)

    @property
    def shipping_total(self) -> int:
        return int(self.shipping_method["price"]) if self.shipping_method else 0

    @property
    def total(self) -> int:
        return self.sub_total + self.shipping_total + self.tax_total


@dataclass(slots=True, eq=False)
class Payment:
    """What the shopper pays with; never holds the card number or CVC."""

    kind: str  # "card" | "token" | "intent"
    payment_method_id: int
    brand: str | None = None
    last_four: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    outcome: CardOutcome = CardOutcome.SUCCEED
    provider: str = "STRIPE"


@dataclass(slots=True, eq=False)
class Intent:
    """A Stripe PaymentIntent as Violet exposes it (payment_transactions[0])."""

    id: str
    client_secret: str
    transaction_id: int
    amount: int
    capture_status: str = "REQUIRES_PAYMENT_METHOD"
    confirmed: bool = False
    three_ds: bool = False
    """Created at submit for a 3-D Secure card, not by an intent-based payment."""


@dataclass(slots=True, eq=False)
class Cart:
    id: int
    app_id: int
    token: str
    currency: str
    date_created: str
    date_last_modified: str
    app_order_id: str | None = None
    referral_id: str | None = None
    wallet_based_checkout: bool = False
    customer: dict[str, Any] | None = None
    shipping_address: dict[str, Any] | None = None
    billing_address: dict[str, Any] | None = None
    bags: list[Bag] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    pending_errors: list[dict[str, Any]] = field(default_factory=list)
    priced: bool = False
    status: str = IN_PROGRESS
    date_submitted: str | None = None
    payment: Payment | None = None
    intent: Intent | None = None
    action_confirmed: bool = False
    """The shopper completed the 3-D Secure challenge / confirmed the intent (control surface)."""
    deleted: bool = False

    @property
    def intent_based(self) -> bool:
        return self.intent is not None and not self.intent.three_ds

    @property
    def sub_total(self) -> int:
        return sum(b.sub_total for b in self.bags)

    @property
    def shipping_total(self) -> int:
        return sum(b.shipping_total for b in self.bags)

    @property
    def tax_total(self) -> int:
        return sum(b.tax_total for b in self.bags)

    @property
    def total(self) -> int:
        return sum(b.total for b in self.bags)

    @property
    def shows_totals(self) -> bool:
        """Violet fills the totals once the cart was priced or any shipping method was set."""
        return self.priced or any(b.shipping_method is not None for b in self.bags)

    def touch(self) -> None:
        self.date_last_modified = timestamp()


def render_address(address: dict[str, Any]) -> dict[str, Any]:
    return dict(address)


def _render_sku(cart: Cart, bag: Bag, item: OrderSku) -> dict[str, Any]:
    sku = item.sku
    out: dict[str, Any] = {
        "id": item.id,
        "merchant_id": sku.merchant_id,
        "app_id": cart.app_id,
        "product_id": sku.product_id,
        "sku_id": sku.id,
        "external_id": sku.external_id,
        "name": sku.name,
        "brand": sku.brand,
        "thumbnail": sku.thumbnail,
        "quantity": item.quantity,
        "price": item.price,
        "weight": sku.weight,
        "available": item.available,
        "status": item.status,
        "product_type": sku.product_type,
        "line_price": item.line_price,
    }
    if bag.merchant.platform == "ECWID":  # Ecwid reports dimensions (sample 73791)
        out["height"] = out["width"] = out["length"] = 0
    return out


def render_bag(cart: Cart, bag: Bag) -> dict[str, Any]:
    merchant = bag.merchant
    out: dict[str, Any] = {
        "id": bag.id,
        "bag_id": bag.id,
        "order_id": cart.id,
        "merchant_id": merchant.id,
        "merchant_name": merchant.name,
        "app_id": cart.app_id,
        "status": bag.status,
        "bag_status": bag.status,
        "fulfillment_status": bag.fulfillment_status,
        "financial_status": bag.financial_status,
        "skus": [_render_sku(cart, bag, s) for s in bag.skus],
        "taxes": list(bag.taxes),
        "sub_total": bag.sub_total,
        "taxes_included": False,
        "transactions": list(bag.transactions),
        "external_checkout": True,
        "commission_rate": merchant.commission_rate,
        "date_created": bag.date_created,
        "remorse_period_ends": bag.remorse_period_ends,
        "currency": cart.currency,
        "external_currency": "USD",
        "channel": "APP",
        "platform": merchant.platform,
        "fulfillments": [],
        "discounts": [],
        "wallet_based_checkout": cart.wallet_based_checkout,
    }
    if cart.currency != "USD":
        out["currency_exchange_rate"] = float(CURRENCIES[cart.currency][1])
    if bag.shipping_method is not None:
        out["shipping_method"] = dict(bag.shipping_method)
    if cart.priced or bag.shipping_method is not None:
        out["shipping_total"] = bag.shipping_total
        out["tax_total"] = bag.tax_total
        out["discount_total"] = 0
        out["total"] = bag.total
    if bag.external_id is not None:
        out["external_id"] = bag.external_id
    if cart.app_order_id is not None:
        out["app_order_id"] = cart.app_order_id
    return out


def render_intent(cart: Cart, intent: Intent) -> dict[str, Any]:
    return {
        "id": intent.transaction_id,
        "order_id": cart.id,
        "payment_provider": "STRIPE",
        "payment_provider_transaction_id": intent.id,
        "amount": intent.amount,
        "currency": cart.currency,
        "capture_status": intent.capture_status,
        "capture_method": "AUTOMATIC",
        "transfer_status": "PENDING",
        "metadata": {
            "payment_intent_client_secret": intent.client_secret,
            "payment_intent_id": intent.id,
        },
        "errors": [],
    }


def render_cart(cart: Cart) -> dict[str, Any]:
    """The Violet Order entity for this cart (GET /checkout/cart/{id} and every mutation)."""
    out: dict[str, Any] = {
        "id": cart.id,
        "order_id": cart.id,
        "token": cart.token,
        "user_id": USER_ID,
        "app_id": cart.app_id,
        "developer_id": DEVELOPER_ID,
        "bags": [render_bag(cart, b) for b in cart.bags],
        "errors": list(cart.errors),
        "status": cart.status,
        "order_status": cart.status,
        "is_guest": True,
        "guest": True,
        "date_created": cart.date_created,
        "date_last_modified": cart.date_last_modified,
        "priced": cart.priced,
        "wallet_based_checkout": cart.wallet_based_checkout,
        "intent_based_checkout": cart.intent_based,
        "currency": cart.currency,
        "currency_symbol": CURRENCIES[cart.currency][0],
        "stripe_key": STRIPE_KEY,
        "channel": "APP",
    }
    if cart.customer is not None:
        out["customer"] = dict(cart.customer)
    if cart.shipping_address is not None:
        out["shipping_address"] = render_address(cart.shipping_address)
    if cart.billing_address is not None:
        out["billing_address"] = render_address(cart.billing_address)
    if cart.bags:
        out["sub_total"] = cart.sub_total
    if cart.shows_totals:
        out["shipping_total"] = cart.shipping_total
        out["tax_total"] = cart.tax_total
        out["discount_total"] = 0
        out["total"] = cart.total
    if cart.app_order_id is not None:
        out["app_order_id"] = cart.app_order_id
    if cart.referral_id is not None:
        out["referral_id"] = cart.referral_id
    if cart.date_submitted is not None:
        out["date_submitted"] = cart.date_submitted
    payment = cart.payment
    if payment is not None and payment.brand is not None:
        out["payment_method"] = {
            "payment_method_id": payment.payment_method_id,
            "brand": payment.brand,
            "last_four": payment.last_four,
            "exp_month": payment.exp_month,
            "exp_year": payment.exp_year,
            "default": True,
        }
    if cart.intent is not None:
        out["payment_intent_client_secret"] = cart.intent.client_secret
        out["payment_transactions"] = [render_intent(cart, cart.intent)]
    return out
