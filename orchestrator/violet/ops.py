"""The operations of Violet's API the client makes, and what each may safely do again.

The transport reads `read` (may it be retried inline) and `gated` (may it leave once the send
gate closes); the audit trail names each exchange by `name`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["READ_OPS", "Op"]


@dataclass(frozen=True, slots=True)
class Op:
    """One Violet operation: its audit name, HTTP method, and whether it is an idempotent read.

    `gated`: repeating it makes a second cart, charge or order, so while the runner sets a send
    gate (violet/gate.py) it is sent only if the gate allows it.
    `platform`: Violet calls the merchants' platforms to answer it (Violet's README §2.1), so
    it draws on their rate budgets (violet/pacing.py); reads of Violet's own record do not.
    """

    name: str
    method: str
    read: bool
    gated: bool = False
    platform: bool = False


LOGIN = Op("login", "POST", read=True)  # minting another token is harmless
REFRESH = Op("refresh", "GET", read=True)
CREATE_CART = Op("create_cart", "POST", read=False, gated=True, platform=True)
GET_CART = Op("get_cart", "GET", read=True)
DELETE_CART = Op("delete_cart", "DELETE", read=False, platform=True)
CUSTOMER = Op("customer", "POST", read=False, platform=True)
SHIPPING_ADDRESS = Op("shipping_address", "POST", read=False, platform=True)
BILLING_ADDRESS = Op("billing_address", "POST", read=False, platform=True)
SHIPPING_AVAILABLE = Op("shipping_available", "GET", read=True, platform=True)
SET_SHIPPING = Op("set_shipping", "POST", read=False, platform=True)
PRICE = Op("price", "GET", read=True, platform=True)
PAYMENT = Op("payment", "POST", read=False, gated=True, platform=True)
PAYMENT_UPDATE = Op("payment_update", "POST", read=False)
SUBMIT = Op("submit", "POST", read=False, gated=True, platform=True)
GET_ORDER = Op("get_order", "GET", read=True)
SEARCH_ORDERS = Op("search_orders", "POST", read=True)
CANCEL_ORDER = Op("cancel_order", "POST", read=False, platform=True)
# A bag's cancel or refund after submit: Violet has no idempotency key and answers 202 whether it
# worked or not, so a second request is a second cancel or a second refund (engine/actions.py).
CANCEL_BAG = Op("cancel_bag", "POST", read=False, gated=True, platform=True)
REFUND_BAG = Op("refund_bag", "POST", read=False, gated=True, platform=True)

#: The names of the operations that change nothing at Violet, for records that keep only an
#: operation's name (`CallRecord.op`): a step that sent only these applied nothing.
READ_OPS: frozenset[str] = frozenset(
    op.name for op in list(globals().values()) if isinstance(op, Op) and op.read
)
