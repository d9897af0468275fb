"""Pydantic models of Violet's request and response bodies, tolerant of what Violet adds later.

Violet grows its enums and objects without notice, so enum-like fields are plain ``str`` (with
constants classes for the values we know) and unknown fields are ignored: a new value must never
turn a successful checkout call into a parse failure. Money is integer minor units (cents).

Callers import them from here; they are defined by topic in
`statuses` (known enum values, what a bag's status means), `checkout_models` (what a checkout
sends), `order_models` (the cart or order Violet answers) and `action_models` (the answers to a
bag's cancel and refund), on the shared base of `model_base`.
"""

from __future__ import annotations

from orchestrator.violet.action_models import (
    CancellationStatus,
    OrderCancellation,
    Refund,
    RefundStatus,
)
from orchestrator.violet.checkout_models import (
    Address,
    CardPayment,
    Customer,
    IntentPayment,
    PaymentMethod,
    ShippingSelection,
    SkuLine,
    TokenPayment,
)
from orchestrator.violet.order_models import (
    Bag,
    BagShippingMethods,
    Cart,
    OrderError,
    OrderSku,
    ShippingMethod,
    Transaction,
)
from orchestrator.violet.order_models import _OrderPage as _OrderPage
from orchestrator.violet.statuses import (
    ACCEPTED_BAG_STATUSES,
    OPEN_BAG_STATUSES,
    REFUSED_BAG_STATUSES,
    BagStatus,
    ErrorType,
    FinancialStatus,
    OrderStatus,
    ProductType,
    unsettled_bag_status,
)

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
