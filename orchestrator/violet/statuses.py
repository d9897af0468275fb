"""Known values of Violet's enum-like fields, and what a bag's status says about a submit.

The fields themselves are plain ``str`` (Violet grows its enums without notice); these classes
name the values we know.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACCEPTED_BAG_STATUSES",
    "NO_SHIPPING_TYPES",
    "OPEN_BAG_STATUSES",
    "REFUSED_BAG_STATUSES",
    "BagStatus",
    "ErrorType",
    "FinancialStatus",
    "OrderStatus",
    "ProductType",
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


NO_SHIPPING_TYPES: Final = frozenset({ProductType.DIGITAL, ProductType.VIRTUAL})

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
