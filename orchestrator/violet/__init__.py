"""Violet checkout API client: typed models, classified errors, redaction, audit capture.

Knows nothing of the database or the runner: it takes explicit arguments and raises errors that
say what the caller may do (retry, reconcile, fail, re-authenticate).
"""

from orchestrator.violet.calls import CallRecord, capture_calls
from orchestrator.violet.client import VioletClient, VioletSettings
from orchestrator.violet.errors import (
    Classification,
    VioletAuthError,
    VioletCartErrors,
    VioletError,
    VioletNotFound,
    VioletOutcomeUnknown,
    VioletPaymentDeclined,
    VioletPermanentError,
    VioletRateLimited,
    VioletRetryableError,
    VioletSendRefused,
)
from orchestrator.violet.gate import SendGate, send_gate
from orchestrator.violet.models import (
    Address,
    Bag,
    BagShippingMethods,
    BagStatus,
    CardPayment,
    Cart,
    Customer,
    ErrorType,
    FinancialStatus,
    IntentPayment,
    OrderCancellation,
    OrderError,
    OrderSku,
    OrderStatus,
    PaymentMethod,
    ProductType,
    ShippingMethod,
    ShippingSelection,
    SkuLine,
    TokenPayment,
    Transaction,
)
from orchestrator.violet.redact import RedactingFilter, redact, scrub_text
from orchestrator.violet.sent import when_request_sent

__all__ = [
    "Address",
    "Bag",
    "BagShippingMethods",
    "BagStatus",
    "CallRecord",
    "CardPayment",
    "Cart",
    "Classification",
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
    "RedactingFilter",
    "SendGate",
    "ShippingMethod",
    "ShippingSelection",
    "SkuLine",
    "TokenPayment",
    "Transaction",
    "VioletAuthError",
    "VioletCartErrors",
    "VioletClient",
    "VioletError",
    "VioletNotFound",
    "VioletOutcomeUnknown",
    "VioletPaymentDeclined",
    "VioletPermanentError",
    "VioletRateLimited",
    "VioletRetryableError",
    "VioletSendRefused",
    "VioletSettings",
    "capture_calls",
    "redact",
    "scrub_text",
    "send_gate",
    "when_request_sent",
]
