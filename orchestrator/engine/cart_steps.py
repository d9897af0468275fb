"""The steps that build the cart at Violet: create it, apply the customer, choose shipping.

Each step's `call` does the Violet work; its `reconcile` (the base's overwrite rule unless said
otherwise) decides after an unknown outcome whether the work is done, must be redone or must wait.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from orchestrator.engine.decisions import (
    Advance,
    Decision,
    Fail,
    Outcome,
    Step,
    StepContext,
    error_summary,
    settle_or_redo,
)
from orchestrator.states import APPLY_CUSTOMER, APPLY_SHIPPING, CREATE_CART
from orchestrator.violet import (
    Address,
    BagShippingMethods,
    Customer,
    ShippingSelection,
    SkuLine,
    VioletCartErrors,
    VioletClient,
    VioletError,
)


class CreateCart(Step):
    name = CREATE_CART

    async def call(self, ctx: StepContext) -> Outcome:
        skus = [SkuLine(sku_id=s["sku_id"], quantity=s["quantity"]) for s in ctx.request["skus"]]
        try:
            cart = await ctx.client.create_cart(
                skus=skus, app_order_id=ctx.app_order_id, currency=ctx.request["currency"]
            )
        except VioletCartErrors as exc:
            # The cart exists but cannot be bought (out of stock...): record it and release it.
            await _release(ctx.client, exc.cart.id)
            return Fail(error_summary(exc, self.name), exc.cart)
        return Advance(CREATE_CART, cart)

    async def reconcile(self, ctx: StepContext) -> Decision:
        found = await ctx.client.search_orders(
            app_order_id=ctx.app_order_id, exclude_in_progress=False
        )
        if not found:
            return settle_or_redo(ctx, {"rule": "no cart found by app_order_id", "found": 0})
        found.sort(key=lambda cart: cart.id)
        adopted, orphans = found[0], found[1:]
        for orphan in orphans:
            await _release(ctx.client, orphan.id)
        return Advance(
            CREATE_CART,
            adopted,
            {
                "rule": "cart found by app_order_id: adopted, not created again",
                "adopted": adopted.id,
                "orphans_released": [c.id for c in orphans],
            },
        )


async def _release(client: VioletClient, cart_id: int) -> None:
    """Delete an unusable or orphan cart; failing to release it does not fail the checkout."""
    with contextlib.suppress(VioletError):
        await client.delete_cart(cart_id)


class ApplyCustomer(Step):
    name = APPLY_CUSTOMER

    async def call(self, ctx: StepContext) -> Outcome:
        request = ctx.request
        shipping = request.get("shipping_address")
        billing = request.get("billing_address")
        customer = Customer(
            first_name=request["customer"]["first_name"],
            last_name=request["customer"]["last_name"],
            email=request["customer"]["email"],
            shipping_address=_address(shipping),
            billing_address=_address(billing or shipping),
            same_address=billing is None and shipping is not None,
        )
        cart = await ctx.client.apply_customer(ctx.cart_id(), customer)
        if any(bag.needs_shipping for bag in cart.bags) and shipping is None:
            return Fail(
                {
                    "class": "permanent",
                    "type": "shipping_address_required",
                    "message": "shipping_address is required: the cart holds physical goods",
                    "status": None,
                    "step": self.name,
                },
                cart,
            )
        return Advance(APPLY_CUSTOMER, cart)


def _address(data: Mapping[str, Any] | None) -> Address | None:
    return None if data is None else Address.model_validate(dict(data))


class ApplyShipping(Step):
    name = APPLY_SHIPPING

    async def call(self, ctx: StepContext) -> Outcome:
        cart_id = ctx.cart_id()
        offers = await ctx.client.get_available_shipping_methods(cart_id)
        policy = ctx.request.get("shipping", {}).get("policy", "cheapest")
        selections = []
        for offer in offers:
            choice = _choose(offer, policy)
            if choice is None:
                return Fail(
                    {
                        "class": "permanent",
                        "type": "no_shipping_method",
                        "message": f"Violet offers no shipping method for bag {offer.bag_id}",
                        "status": None,
                        "step": self.name,
                    }
                )
            selections.append(choice)
        cart = await ctx.client.set_shipping_methods(cart_id, selections)
        return Advance(
            APPLY_SHIPPING, cart, {"methods": [s.shipping_method_id for s in selections]}
        )


def _choose(offer: BagShippingMethods, policy: str) -> ShippingSelection | None:
    methods = offer.shipping_methods
    if not methods:
        return None
    method = methods[0] if policy == "first" else min(methods, key=lambda m: m.price or 0)
    return ShippingSelection(bag_id=offer.bag_id, shipping_method_id=method.shipping_method_id)
