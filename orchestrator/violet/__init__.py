"""Violet checkout API client: typed models, classified errors, redaction, audit capture.

Knows nothing of the database or the runner: it takes explicit arguments and raises errors that
say what the caller may do (retry, reconcile, fail, re-authenticate).

Names are imported on first use (PEP 562), so a caller that needs one model or error does not
pay for the HTTP client. `redact` is imported here at once: it is also the name of a submodule,
which would otherwise shadow the function once anything imported `orchestrator.violet.redact`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from orchestrator.violet.redact import RedactingFilter, redact, scrub_text

if TYPE_CHECKING:
    from orchestrator.violet.calls import CallRecord, capture_calls
    from orchestrator.violet.client import VioletClient, VioletSettings
    from orchestrator.violet.errors import (
        Classification,
        VioletAuthError,
        VioletBudgetClosed,
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
    from orchestrator.violet.pacing import Pacer, paced_by
    from orchestrator.violet.sent import when_request_sent

_HOMES = {
    "Address": "orchestrator.violet.models",
    "Bag": "orchestrator.violet.models",
    "BagShippingMethods": "orchestrator.violet.models",
    "BagStatus": "orchestrator.violet.models",
    "CallRecord": "orchestrator.violet.calls",
    "CardPayment": "orchestrator.violet.models",
    "Cart": "orchestrator.violet.models",
    "Classification": "orchestrator.violet.errors",
    "Customer": "orchestrator.violet.models",
    "ErrorType": "orchestrator.violet.models",
    "FinancialStatus": "orchestrator.violet.models",
    "IntentPayment": "orchestrator.violet.models",
    "OrderCancellation": "orchestrator.violet.models",
    "OrderError": "orchestrator.violet.models",
    "OrderSku": "orchestrator.violet.models",
    "OrderStatus": "orchestrator.violet.models",
    "PaymentMethod": "orchestrator.violet.models",
    "ProductType": "orchestrator.violet.models",
    "Pacer": "orchestrator.violet.pacing",
    "SendGate": "orchestrator.violet.gate",
    "ShippingMethod": "orchestrator.violet.models",
    "ShippingSelection": "orchestrator.violet.models",
    "SkuLine": "orchestrator.violet.models",
    "TokenPayment": "orchestrator.violet.models",
    "Transaction": "orchestrator.violet.models",
    "VioletAuthError": "orchestrator.violet.errors",
    "VioletBudgetClosed": "orchestrator.violet.errors",
    "VioletCartErrors": "orchestrator.violet.errors",
    "VioletClient": "orchestrator.violet.client",
    "VioletError": "orchestrator.violet.errors",
    "VioletNotFound": "orchestrator.violet.errors",
    "VioletOutcomeUnknown": "orchestrator.violet.errors",
    "VioletPaymentDeclined": "orchestrator.violet.errors",
    "VioletPermanentError": "orchestrator.violet.errors",
    "VioletRateLimited": "orchestrator.violet.errors",
    "VioletRetryableError": "orchestrator.violet.errors",
    "VioletSendRefused": "orchestrator.violet.errors",
    "VioletSettings": "orchestrator.violet.client",
    "capture_calls": "orchestrator.violet.calls",
    "paced_by": "orchestrator.violet.pacing",
    "send_gate": "orchestrator.violet.gate",
    "when_request_sent": "orchestrator.violet.sent",
}

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
    "Pacer",
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
    "VioletBudgetClosed",
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
    "paced_by",
    "redact",
    "scrub_text",
    "send_gate",
    "when_request_sent",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
