"""Pydantic models of Violet's request and response bodies, tolerant of what Violet adds later.

Violet grows its enums and objects without notice, so enum-like fields are plain ``str`` (with
constants classes for the values we know) and unknown fields are ignored: a new value must never
turn a successful checkout call into a parse failure. Money is integer minor units (cents).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from orchestrator.sensitive import redact_text

__all__ = [
    "ACCEPTED_BAG_STATUSES",
    "OPEN_BAG_STATUSES",
    "REFUSED_BAG_STATUSES",
    "Address",
    "Bag",
    "BagShippingMethods",
    "BagStatus",
    "CancellationStatus",
    "CardPayment",
    "Cart",
    "Customer",
    "ErrorType",
    "FinancialStatus",
    "IntentPayment",
    "OrderCancellation",
    "OrderError",
    "OrderSku",
    "OrderStatus",
    "PaymentMethod",
    "ProductType",
    "Refund",
    "RefundStatus",
    "ShippingMethod",
    "ShippingSelection",
    "SkuLine",
    "TokenPayment",
    "Transaction",
    "unsettled_bag_status",
]


class OrderStatus:
    """Known values of ``Cart.status`` (Violet's order status)."""

    IN_PROGRESS: Final = "IN_PROGRESS"
    PROCESSING: Final = "PROCESSING"
    REQUIRES_ACTION: Final = "REQUIRES_ACTION"
    COMPLETED: Final = "COMPLETED"
    CANCELED: Final = "CANCELED"
    PARTIALLY_REFUNDED: Final = "PARTIALLY_REFUNDED"
    REFUNDED: Final = "REFUNDED"
    ACCEPTED: Final = "ACCEPTED"
    REJECTED: Final = "REJECTED"


class BagStatus:
    """Known values of ``Bag.status``."""

    IN_PROGRESS: Final = "IN_PROGRESS"
    SUBMITTED: Final = "SUBMITTED"
    ACCEPTED: Final = "ACCEPTED"
    COMPLETED: Final = "COMPLETED"
    PARTIALLY_REFUNDED: Final = "PARTIALLY_REFUNDED"
    REFUNDED: Final = "REFUNDED"
    REJECTED: Final = "REJECTED"
    CANCELED: Final = "CANCELED"
    BACKORDERED: Final = "BACKORDERED"


class FinancialStatus:
    """Known values of ``Bag.financial_status``."""

    UNPAID: Final = "UNPAID"
    AUTHORIZED: Final = "AUTHORIZED"
    PENDING: Final = "PENDING"
    PAID: Final = "PAID"
    PARTIALLY_PAID: Final = "PARTIALLY_PAID"
    REFUNDED: Final = "REFUNDED"
    PARTIALLY_REFUNDED: Final = "PARTIALLY_REFUNDED"
    VOIDED: Final = "VOIDED"


class ErrorType:
    """Known values of ``OrderError.type`` and of the ``error`` field of Violet error bodies."""

    EXTERNAL_CREATE_CART: Final = "EXTERNAL_CREATE_CART"
    EXTERNAL_ADD_ITEM: Final = "EXTERNAL_ADD_ITEM"
    INTERNAL_ADD_ITEM: Final = "INTERNAL_ADD_ITEM"
    EXTERNAL_UPDATE_ITEM: Final = "EXTERNAL_UPDATE_ITEM"
    EXTERNAL_REMOVE_ITEM: Final = "EXTERNAL_REMOVE_ITEM"
    EXTERNAL_ADD_CUSTOMER: Final = "EXTERNAL_ADD_CUSTOMER"
    EXTERNAL_ADD_ADDRESSES: Final = "EXTERNAL_ADD_ADDRESSES"
    EXTERNAL_ADD_SHIPPING_ADDRESS: Final = "EXTERNAL_ADD_SHIPPING_ADDRESS"
    EXTERNAL_ADD_BILLING_ADDRESS: Final = "EXTERNAL_ADD_BILLING_ADDRESS"
    EXTERNAL_GET_SHIPPING_METHODS: Final = "EXTERNAL_GET_SHIPPING_METHODS"
    EXTERNAL_SET_SHIPPING_METHOD: Final = "EXTERNAL_SET_SHIPPING_METHOD"
    EXTERNAL_SET_PAYMENT_METHOD: Final = "EXTERNAL_SET_PAYMENT_METHOD"
    EXTERNAL_PRICE_CART: Final = "EXTERNAL_PRICE_CART"
    EXTERNAL_SUBMIT_CART: Final = "EXTERNAL_SUBMIT_CART"
    EXTERNAL_DELETE_CART: Final = "EXTERNAL_DELETE_CART"
    EXTERNAL_CANCEL_ORDER: Final = "EXTERNAL_CANCEL_ORDER"
    EXTERNAL_WRITE_ORDER: Final = "EXTERNAL_WRITE_ORDER"
    EXTERNAL_MARK_ORDER_AS_PAID: Final = "EXTERNAL_MARK_ORDER_AS_PAID"
    EXTERNAL_ADD_DISCOUNT_CODE: Final = "EXTERNAL_ADD_DISCOUNT_CODE"
    EXTERNAL_REMOVE_DISCOUNT_CODE: Final = "EXTERNAL_REMOVE_DISCOUNT_CODE"
    # Payment failures (``error`` field of a 4xx body, Stripe's decline codes).
    CARD_DECLINED: Final = "card_declined"
    INSUFFICIENT_FUNDS: Final = "insufficient_funds"
    EXPIRED_CARD: Final = "expired_card"
    INCORRECT_CVC: Final = "incorrect_cvc"
    INVALID_NUMBER: Final = "invalid_number"


class ProductType:
    """Known values of ``OrderSku.product_type``; only DIGITAL and VIRTUAL skip shipping."""

    PHYSICAL: Final = "PHYSICAL"
    DIGITAL: Final = "DIGITAL"
    VIRTUAL: Final = "VIRTUAL"


_NO_SHIPPING_TYPES: Final = frozenset({ProductType.DIGITAL, ProductType.VIRTUAL})

# What a bag's status says about a submit (Violet's bag and order states, README §3.5, S12/S13).
# These three sets are the one place that decides it: the submit step, the client's submit check
# and `verify` all read them.
#: The merchant took the bag; later statuses (fulfilment, refunds) are progress of a taken order.
ACCEPTED_BAG_STATUSES: Final = frozenset(
    {
        BagStatus.ACCEPTED,
        BagStatus.COMPLETED,
        BagStatus.BACKORDERED,
        BagStatus.PARTIALLY_REFUNDED,
        BagStatus.REFUNDED,
    }
)
#: Settled without the merchant taking it: rejected by its platform, or cancelled.
REFUSED_BAG_STATUSES: Final = frozenset({BagStatus.REJECTED, BagStatus.CANCELED})
#: Never sent to a merchant: the cart is still a cart (unless the order is PROCESSING, when its
#: bags are on their way and their outcome is not known yet).
OPEN_BAG_STATUSES: Final = frozenset({None, BagStatus.IN_PROGRESS})
# Anything else is an outcome not known yet: SUBMITTED ("short-lived", S13) and any status Violet
# adds later. A submit is never judged rejected on a status we cannot read.


def unsettled_bag_status(status: str | None) -> bool:
    """Sent to its merchant with no answer yet: neither accepted, refused nor open."""
    return not (
        status in ACCEPTED_BAG_STATUSES
        or status in REFUSED_BAG_STATUSES
        or status in OPEN_BAG_STATUSES
    )


_LOOSE = ConfigDict(extra="ignore", populate_by_name=True)


class _Loose(BaseModel):
    model_config = _LOOSE


# ---------------------------------------------------------------- request-side building blocks


class Address(_Loose):
    """A shipping or billing address (Violet's OrderAddress)."""

    address_1: str
    address_2: str | None = None
    city: str
    state: str
    postal_code: str
    country: str
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    email: str | None = None
    type: str | None = None


_ADDRESS_REQUIRED: Final = ("address_1", "city", "state", "postal_code", "country")


def _lenient_address(value: Any) -> Any:
    """Violet may answer with partial addresses (wallet carts); fill blanks rather than fail."""
    if isinstance(value, dict):
        missing = [k for k in _ADDRESS_REQUIRED if value.get(k) is None]
        if missing:
            value = {**value, **dict.fromkeys(missing, "")}
    return value


_AnyAddress = Annotated[Address | None, BeforeValidator(_lenient_address)]


class Customer(_Loose):
    """The shopper, as applied to a cart (guest checkout: Violet keeps no customer records)."""

    first_name: str
    last_name: str
    email: str
    shipping_address: _AnyAddress = None
    billing_address: _AnyAddress = None
    same_address: bool | None = None


def _lenient_customer(value: Any) -> Any:
    if isinstance(value, dict):
        missing = [k for k in ("first_name", "last_name", "email") if value.get(k) is None]
        if missing:
            value = {**value, **dict.fromkeys(missing, "")}
    return value


class SkuLine(_Loose):
    """One line of a new cart: a catalog SKU and a quantity."""

    sku_id: int
    quantity: int = 1


class CardPayment(_Loose):
    """A raw card (sandbox / development only). Held in memory, never persisted or logged."""

    card_number: SecretStr
    card_cvc: SecretStr
    card_exp_month: int
    card_exp_year: int
    card_postal_code: str

    def to_body(self) -> dict[str, Any]:
        """The JSON body for ``POST .../payment``; the only place the secrets are revealed."""
        return {
            "card_number": self.card_number.get_secret_value(),
            "card_cvc": self.card_cvc.get_secret_value(),
            "card_exp_month": self.card_exp_month,
            "card_exp_year": self.card_exp_year,
            "card_postal_code": self.card_postal_code,
        }


class TokenPayment(_Loose):
    """A provider token (e.g. a Stripe ``tok_...``) for the API-only payment path."""

    token: str
    payment_provider: str = "STRIPE"

    def to_body(self) -> dict[str, Any]:
        return {"token": self.token, "payment_provider": self.payment_provider}


class IntentPayment(_Loose):
    """Violet's recommended path: a Stripe PaymentIntent confirmed by the shopper's front end."""

    def to_body(self) -> dict[str, Any]:
        return {"intent_based_capture": True}


PaymentMethod = CardPayment | TokenPayment | IntentPayment


class ShippingSelection(_Loose):
    """The shipping method chosen for one bag."""

    bag_id: int
    shipping_method_id: str


# ---------------------------------------------------------------- response-side entities


class ShippingMethod(_Loose):
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


class BagShippingMethods(_Loose):
    """One entry of ``GET .../shipping/available``: the methods a bag may use."""

    bag_id: int
    shipping_methods: list[ShippingMethod] = Field(default_factory=list)


def _scrubbed(value: str | None) -> str | None:
    return None if value is None else redact_text(value)


#: Free text from Violet that is stored and shown (error messages, merchant names): redacted by
#: the one specification of what is secret as it is parsed, so no later use can leak it.
ScrubbedText = Annotated[str | None, AfterValidator(_scrubbed)]


class OrderError(_Loose):
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


class OrderSku(_Loose):
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


class Transaction(_Loose):
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


class Bag(_Loose):
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
        return any(sku.product_type not in _NO_SHIPPING_TYPES for sku in self.skus)

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


class Cart(_Loose):
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
    customer: Annotated[Customer | None, BeforeValidator(_lenient_customer)] = None
    shipping_address: _AnyAddress = None
    billing_address: _AnyAddress = None
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


class Refund(_Loose):
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


class _OrderPage(_Loose):
    """A page of ``POST /orders/search``."""

    content: list[Cart] = Field(default_factory=list)
