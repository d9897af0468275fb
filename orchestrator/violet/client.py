"""Async client for Violet's checkout API: one typed method per endpoint, and the shared JWT.

Each method builds its request, sends it through the transport (transport.py: pools, deadline,
send gate, size cap, the only inline retries), and reads the answer into a model or a classified
error (answers.py), every exchange recorded for the audit (calls.py). One instance holds one set
of connection pools and one JWT shared by every caller (session.py). It never repeats a call
that may have been applied; everything else is handed to the caller, who owns the durable retry
and reconcile logic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.violet import ops
from orchestrator.violet.answers import parse_order_page, parse_shipping_methods, read_parsed
from orchestrator.violet.calls import (
    record_answer,
    summarize_cancel,
    summarize_methods,
    summarize_orders,
)
from orchestrator.violet.models import (
    Address,
    BagShippingMethods,
    Cart,
    Customer,
    OrderCancellation,
    PaymentMethod,
    Refund,
    ShippingSelection,
    SkuLine,
)
from orchestrator.violet.session import VioletSession, VioletSettings

__all__ = ["VioletClient", "VioletSettings"]


class VioletClient(VioletSession):
    """Violet's checkout API as typed async methods; share one instance per process."""

    # ------------------------------------------------------------ checkout API

    async def create_cart(
        self,
        *,
        skus: Sequence[SkuLine],
        app_order_id: str,
        currency: str = "USD",
        customer: Customer | None = None,
        wallet_based_checkout: bool = False,
    ) -> Cart:
        """Create a cart (never retried once sent: a second cart would be a duplicate)."""
        body: dict[str, Any] = {
            "base_currency": currency,
            "app_order_id": app_order_id,
            "skus": [{"sku_id": s.sku_id, "quantity": s.quantity} for s in skus],
            "wallet_based_checkout": wallet_based_checkout,
        }
        if customer is not None:
            body["customer"] = customer.model_dump(exclude_none=True)
        return await self._cart_call(ops.CREATE_CART, "/checkout/cart", body)

    async def get_cart(self, cart_id: int) -> Cart:
        """Read a cart or order; its ``errors[]`` are returned as data, never raised."""
        return await self._cart_call(ops.GET_CART, f"/checkout/cart/{cart_id}", check=False)

    async def apply_customer(self, cart_id: int, customer: Customer) -> Cart:
        body = customer.model_dump(exclude_none=True)
        return await self._cart_call(ops.CUSTOMER, f"/checkout/cart/{cart_id}/customer", body)

    async def set_shipping_address(self, cart_id: int, address: Address) -> Cart:
        body = address.model_dump(exclude_none=True)
        path = f"/checkout/cart/{cart_id}/shipping_address"
        return await self._cart_call(ops.SHIPPING_ADDRESS, path, body)

    async def set_billing_address(self, cart_id: int, address: Address) -> Cart:
        body = address.model_dump(exclude_none=True)
        path = f"/checkout/cart/{cart_id}/billing_address"
        return await self._cart_call(ops.BILLING_ADDRESS, path, body)

    async def get_available_shipping_methods(self, cart_id: int) -> list[BagShippingMethods]:
        path = f"/checkout/cart/{cart_id}/shipping/available"
        response = await self._call(ops.SHIPPING_AVAILABLE, path)
        return read_parsed(
            ops.SHIPPING_AVAILABLE, path, response, parse_shipping_methods, summarize_methods
        )

    async def set_shipping_methods(
        self, cart_id: int, selections: Sequence[ShippingSelection]
    ) -> Cart:
        body = [
            {"bag_id": s.bag_id, "shipping_method_id": s.shipping_method_id} for s in selections
        ]
        return await self._cart_call(ops.SET_SHIPPING, f"/checkout/cart/{cart_id}/shipping", body)

    async def price_cart(self, cart_id: int) -> Cart:
        return await self._cart_call(ops.PRICE, f"/checkout/cart/{cart_id}/price")

    async def apply_payment(self, cart_id: int, payment: PaymentMethod) -> Cart:
        """Apply a card, token or payment intent (never retried once sent)."""
        return await self._cart_call(
            ops.PAYMENT, f"/checkout/cart/{cart_id}/payment", payment.to_body()
        )

    async def update_payment(self, cart_id: int) -> Cart:
        """Make Violet bring the Stripe payment intent up to date with the cart total."""
        return await self._cart_call(ops.PAYMENT_UPDATE, f"/checkout/cart/{cart_id}/payment/update")

    async def submit(self, cart_id: int, *, app_order_id: str | None = None) -> Cart:
        """Submit the cart. Raises VioletCartErrors only if it has errors, no bag was accepted and
        none is pending: a partly accepted multi-merchant cart, or an order still PROCESSING, is
        returned for the caller to record per bag."""
        body = {"app_order_id": app_order_id} if app_order_id is not None else {}
        return await self._cart_call(ops.SUBMIT, f"/checkout/cart/{cart_id}/submit", body)

    async def get_order(self, order_id: int) -> Cart:
        return await self._cart_call(ops.GET_ORDER, f"/orders/{order_id}", check=False)

    async def search_orders(
        self, *, app_order_id: str, exclude_in_progress: bool = False
    ) -> list[Cart]:
        """Carts and orders carrying our ``app_order_id`` (the reconcile probe for create_cart)."""
        path = "/orders/search"
        params = {"exclude_in_progress": "true" if exclude_in_progress else "false"}
        body = {"app_order_id": app_order_id}
        response = await self._call(ops.SEARCH_ORDERS, path, body, params)
        return read_parsed(ops.SEARCH_ORDERS, path, response, parse_order_page, summarize_orders)

    async def delete_cart(self, cart_id: int) -> None:
        path = f"/checkout/cart/{cart_id}"
        response = await self._call(ops.DELETE_CART, path)
        record_answer(ops.DELETE_CART, path, response, None, None, None)

    async def cancel_order(
        self, order_id: int, *, reason: str = "canceled by orchestrator"
    ) -> OrderCancellation:
        path = f"/orders/{order_id}/cancel"
        body = {"reason": reason}
        response = await self._call(ops.CANCEL_ORDER, path, body)
        return read_parsed(
            ops.CANCEL_ORDER,
            path,
            response,
            OrderCancellation.model_validate_json,
            summarize_cancel,
        )

    async def cancel_bag(
        self,
        order_id: int,
        bag_id: int,
        *,
        reason: str | None = None,
        reason_code: str | None = None,
    ) -> OrderCancellation:
        """Ask Violet to cancel one bag of a submitted order (never retried once sent: Violet
        answers 202 whether it worked or not, so the answer is a claim a read must confirm)."""
        path = f"/orders/{order_id}/bags/{bag_id}/cancel"
        body: dict[str, Any] = {}
        if reason is not None:
            body["reason"] = reason
        if reason_code is not None:
            body["reason_code"] = reason_code
        response = await self._call(ops.CANCEL_BAG, path, body)
        return read_parsed(
            ops.CANCEL_BAG,
            path,
            response,
            OrderCancellation.model_validate_json,
            summarize_cancel,
        )

    async def refund_bag(
        self,
        order_id: int,
        bag_id: int,
        *,
        amount: int | None = None,
        skus: Sequence[SkuLine] | None = None,
        reason: str | None = None,
    ) -> Refund:
        """Ask Violet to refund a bag: `amount` minor units, the given `skus`, or (neither) all
        that is left. Never retried once sent: a second request is a second refund."""
        path = f"/orders/{order_id}/bags/{bag_id}/refunds"
        body: dict[str, Any] = {}
        if amount is not None:
            body["amount"] = amount
        if skus is not None:
            body["skus"] = [{"sku_id": s.sku_id, "quantity": s.quantity} for s in skus]
        if reason is not None:
            body["reason"] = reason
        response = await self._call(ops.REFUND_BAG, path, body)
        return read_parsed(
            ops.REFUND_BAG, path, response, Refund.model_validate_json, _summarize_refund
        )


def _summarize_refund(value: Refund) -> dict[str, Any]:
    """What the audit keeps of a refund answer: its id, amount and status."""
    return {"id": value.id, "bag_id": value.bag_id, "amount": value.amount, "status": value.status}
