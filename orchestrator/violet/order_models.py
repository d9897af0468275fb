"""What Violet answers about a cart or order: the `Cart` (an order after submit, same id), its
bags, lines, transactions, errors and shipping methods."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from orchestrator.violet.checkout_models import AnyAddress, AnyCustomer
from orchestrator.violet.model_base import Loose, ScrubbedText
from orchestrator.violet.statuses import (
    ACCEPTED_BAG_STATUSES,
    NO_SHIPPING_TYPES,
    REFUSED_BAG_STATUSES,
    BagStatus,
    OrderStatus,
    unsettled_bag_status,
)

__all__ = [
    "Bag",
    "BagShippingMethods",
    "Cart",
    "OrderError",
    "OrderSku",
    "ShippingMethod",
    "Transaction",
]


class ShippingMethod(Loose):
    """A shipping method offered for, or applied to, a bag; the id is an opaque string."""

    shipping_method_id: str
    label: str | None = None
    price: int | None = None
    bag_id: int | None = None
    carrier: str | None = None
    type: str | None = None
    external_id: str | None = None
    id: int | None = None
    merchant_id: int | None = None


class BagShippingMethods(Loose):
    """One entry of ``GET .../shipping/available``: the methods a bag may use."""

    bag_id: int
    shipping_methods: list[ShippingMethod] = Field(default_factory=list)


class OrderError(Loose):
    """An entry of a cart's ``errors[]``: Violet reports bag-level problems here, with HTTP 200."""

    id: int | None = None
    order_id: int | None = None
    bag_id: int | None = None
    entity_id: int | str | None = None
    entity_type: str | None = None
    type: ScrubbedText = None
    message: ScrubbedText = None
    date_created: str | None = None
    platform: str | None = None
    #: A payment refusal relayed from the provider (Stripe's decline_code, e.g. card_declined).
    decline_code: str | None = None
    code: int | str | None = None


class OrderSku(Loose):
    """A line of a bag (``id`` is the order-sku id, not the catalog ``sku_id``)."""

    id: int | None = None
    sku_id: int | None = None
    quantity: int | None = None
    price: int | None = None
    line_price: int | None = None
    available: bool | None = None
    status: str | None = None
    product_type: str | None = None
    name: str | None = None
    merchant_id: int | None = None


class Transaction(Loose):
    """A bag-level payment transaction (AUTHORIZATION, CAPTURE, ...)."""

    id: int | None = None
    type: str | None = None
    status: str | None = None
    amount: int | None = None
    currency: str | None = None
    gateway: str | None = None
    gateway_transaction_id: str | None = None
    bag_id: int | None = None
    error_code: str | None = None


class Bag(Loose):
    """The part of a cart sold by one merchant; accepted or rejected on its own at submit."""

    id: int
    merchant_id: int | None = None
    merchant_name: ScrubbedText = None
    status: str | None = None
    financial_status: str | None = None
    fulfillment_status: str | None = None
    skus: list[OrderSku] = Field(default_factory=list)
    shipping_method: ShippingMethod | None = None
    sub_total: int | None = None
    shipping_total: int | None = None
    tax_total: int | None = None
    discount_total: int | None = None
    total: int | None = None
    external_id: str | None = None
    platform: str | None = None
    transactions: list[Transaction] = Field(default_factory=list)

    @property
    def needs_shipping(self) -> bool:
        """True when any line is physical; an unknown or missing product type counts as physical."""
        return any(sku.product_type not in NO_SHIPPING_TYPES for sku in self.skus)

    @property
    def is_accepted(self) -> bool:
        """The merchant took this bag (see ACCEPTED_BAG_STATUSES)."""
        return self.status in ACCEPTED_BAG_STATUSES

    @property
    def is_rejected(self) -> bool:
        """Settled without the merchant taking it: REJECTED or CANCELED."""
        return self.status in REFUSED_BAG_STATUSES

    @property
    def is_unsettled(self) -> bool:
        """Sent to its merchant (SUBMITTED, or a status we do not know) with no answer yet."""
        return unsettled_bag_status(self.status)


def _move_intent_secret(data: Any) -> Any:
    """Payment transactions carry the intent's client secret in ``metadata``; keep it out of dicts.

    The secret is moved to ``Cart.payment_intent_client_secret`` (a SecretStr), so that neither a
    repr nor a dump of ``payment_transactions`` can reveal it.
    """
    if not isinstance(data, dict):
        return data
    transactions = data.get("payment_transactions")
    if not transactions or not isinstance(transactions, list):
        return data
    secret = data.get("payment_intent_client_secret")
    cleaned: list[Any] = []
    for item in transactions:
        metadata = item.get("metadata") if isinstance(item, dict) else None
        if isinstance(metadata, dict) and "payment_intent_client_secret" in metadata:
            secret = secret or metadata["payment_intent_client_secret"]
            metadata = {k: v for k, v in metadata.items() if k != "payment_intent_client_secret"}
            item = {**item, "metadata": metadata}
        cleaned.append(item)
    return {**data, "payment_transactions": cleaned, "payment_intent_client_secret": secret}


class Cart(Loose):
    """Violet's Order entity: a cart before submit, an order after (same id)."""

    id: int
    status: str | None = None
    app_order_id: str | None = None
    bags: list[Bag] = Field(default_factory=list)
    errors: list[OrderError] = Field(default_factory=list)
    priced: bool | None = None
    sub_total: int | None = None
    shipping_total: int | None = None
    tax_total: int | None = None
    discount_total: int | None = None
    total: int | None = None
    currency: str | None = None
    customer: AnyCustomer = None
    shipping_address: AnyAddress = None
    billing_address: AnyAddress = None
    payment_method: dict[str, Any] | None = None
    stripe_key: str | None = None
    payment_intent_client_secret: SecretStr | None = None
    payment_transactions: list[dict[str, Any]] = Field(default_factory=list)
    wallet_based_checkout: bool | None = None
    intent_based_checkout: bool | None = None
    date_created: str | None = None
    date_last_modified: str | None = None
    date_submitted: str | None = None

    _intent_secret = model_validator(mode="before")(_move_intent_secret)

    @field_validator("bags", "errors", "payment_transactions", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def is_submitted(self) -> bool:
        """Violet has taken the cart past IN_PROGRESS (order status or any bag status)."""
        if self.status is not None and self.status != OrderStatus.IN_PROGRESS:
            return True
        return any(bag.status not in (None, BagStatus.IN_PROGRESS) for bag in self.bags)

    @property
    def needs_shipping(self) -> bool:
        return any(bag.needs_shipping for bag in self.bags)

    @property
    def accepted_bags(self) -> list[Bag]:
        return [bag for bag in self.bags if bag.is_accepted]

    @property
    def rejected_bags(self) -> list[Bag]:
        return [bag for bag in self.bags if bag.is_rejected]

    @property
    def unsettled_bags(self) -> list[Bag]:
        """Bags whose merchant has not answered yet; while the order is PROCESSING that includes
        bags still IN_PROGRESS (not yet sent)."""
        if self.status == OrderStatus.PROCESSING:
            return [bag for bag in self.bags if not (bag.is_accepted or bag.is_rejected)]
        return [bag for bag in self.bags if bag.is_unsettled]

    @property
    def outcome_pending(self) -> bool:
        """Violet took the submit but has not said yet whether its bags are accepted: the order
        is PROCESSING, or a bag is SUBMITTED (or in a status we do not know). Read it again;
        it is neither accepted nor rejected yet."""
        return self.status == OrderStatus.PROCESSING or bool(self.unsettled_bags)

    @property
    def has_payment(self) -> bool:
        """A payment method is applied, or a payment intent exists for the cart."""
        return bool(self.payment_method) or bool(self.payment_transactions)


class _OrderPage(Loose):
    """A page of ``POST /orders/search``."""

    content: list[Cart] = Field(default_factory=list)
