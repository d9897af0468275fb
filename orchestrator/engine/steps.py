"""One step per Violet call (or pair of calls), each with its reconcile rule (design §3).

A step's `call` does the Violet work and says what happened; its `reconcile` runs instead when a
previous attempt's outcome is unknown (a crash or a dropped answer) and decides, with read-only
probes, whether the work is already done, must be redone, or must wait. Steps never touch the
database and never change state themselves: they return a decision the runner applies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.states import (
    APPLY_CUSTOMER,
    APPLY_PAYMENT,
    APPLY_SHIPPING,
    AWAITING_PAYMENT,
    CREATE_CART,
    NEED_PAYMENT,
    PRICE,
    PROVIDE_PAYMENT,
    REQUEST_CONFIRMATION,
    REQUIRE_ACTION,
    SUBMIT,
)
from orchestrator.violet import (
    Address,
    BagShippingMethods,
    CardPayment,
    Cart,
    Customer,
    IntentPayment,
    OrderStatus,
    PaymentMethod,
    ShippingSelection,
    SkuLine,
    TokenPayment,
    VioletAuthError,
    VioletCartErrors,
    VioletClient,
    VioletError,
)
from orchestrator.violet.errors import CARD_DECLINED, decline_in


@dataclass(slots=True)
class StepContext:
    """What a step may look at: the client, the stored request, and in-memory-only card data."""

    client: VioletClient
    state: str
    request: Mapping[str, Any]
    app_order_id: str
    violet_order_id: int | None
    #: Seconds since the step's start on the database's clock (records.py `step_age`).
    step_age: Callable[[], float]
    #: From the step's start, how long an unanswered attempt may still be running at Violet:
    #: until its sender's send bound (two calls' total timeouts) plus the submit settle time.
    settle_window: float
    card: CardPayment | None = None
    #: The cart as Violet last returned it during this drive (None after a resume).
    last_cart: Cart | None = None
    #: Secrets handed to the caller (payment intent client secret); never persisted or logged.
    handout: dict[str, str] = field(default_factory=dict)
    #: This drive already read a submitted order as not settled (`Pending`) and reads it again.
    reading_outcome: bool = False
    #: No read of an unsettled submit is left: record what Violet shows now (see `Submit.judge`).
    last_read: bool = False

    def cart_id(self) -> int:
        if self.violet_order_id is None:
            raise RuntimeError("step needs a Violet cart but none is recorded")
        return self.violet_order_id


@dataclass(frozen=True, slots=True)
class Advance:
    """The step is done: fire `trigger` and record the cart."""

    trigger: str
    cart: Cart | None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Park:
    """Wait for outside input in the state `trigger` leads to."""

    trigger: str
    reason: str
    cart: Cart | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    """Permanent failure: no retry will help."""

    error: dict[str, Any]
    cart: Cart | None = None


@dataclass(frozen=True, slots=True)
class Redo:
    """Reconciliation found the step not done: call Violet again."""

    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Defer:
    """Reconciliation cannot tell yet (a first attempt may still be running): look again later."""

    seconds: float
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Pending:
    """Violet took the submit but has not settled its bags yet (order PROCESSING, bags
    SUBMITTED): an outcome not yet known. The runner records the cart and reads it again."""

    cart: Cart
    detail: dict[str, Any]


Outcome = Advance | Park | Fail
Answer = Outcome | Pending
Decision = Advance | Park | Fail | Redo | Defer | Pending

#: The first gap between two reads of an unsettled submit; each next gap is twice the last.
FIRST_OUTCOME_READ_GAP = 0.5


@dataclass(slots=True)
class OutcomeReads:
    """How one drive reads again a submit Violet has not settled: gaps of 0.5 s, 1 s, 2 s, ...
    until `wait` seconds have passed in all (the last gap is cut to fit), then a last read."""

    wait: float
    reads: int = 0
    waited: float = 0.0

    @property
    def started(self) -> bool:
        return self.reads > 0

    @property
    def exhausted(self) -> bool:
        return self.waited >= self.wait

    def next_gap(self) -> float:
        doubled: float = FIRST_OUTCOME_READ_GAP * 2**self.reads
        gap = min(doubled, max(self.wait - self.waited, 0.0))
        self.reads += 1
        self.waited += gap
        return gap


def error_summary(exc: BaseException, step: str | None = None) -> dict[str, Any]:
    """What is kept of an error: class, Violet's type, a redacted message, the HTTP status.

    A decline is typed `card_declined` wherever Violet put it (its own type, or a
    `decline_code` in `errors[]`), with Violet's type and the reason kept beside it."""
    if isinstance(exc, VioletAuthError) and exc.credentials_refused:
        # Our configuration, not this checkout: it waits for the credentials to be fixed.
        return {
            "class": "config",
            "type": "credentials_refused",
            "message": str(exc)[:500],
            "status": exc.status,
            "step": step,
        }
    if isinstance(exc, VioletError):
        summary = {
            "class": exc.classification,
            "type": exc.error_type or type(exc).__name__,
            "message": str(exc)[:500],
            "status": exc.status,
            "step": step,
        }
        if exc.decline_code is not None:
            _as_decline(summary, exc.decline_code)
        return summary
    return {
        "class": "internal",
        "type": type(exc).__name__,
        "message": str(exc)[:500],
        "step": step,
    }


def _settle_or_redo(ctx: StepContext, detail: dict[str, Any]) -> Redo | Defer:
    """An attempt that started less than the settle window ago may still be running at Violet
    (it may have been sent until the client gave up, and be applied a settle time later): wait."""
    remaining = ctx.settle_window - ctx.step_age()
    if remaining > 0:
        return Defer(remaining, {**detail, "settle_remaining_s": round(remaining, 3)})
    return Redo(detail)


def _address(data: Mapping[str, Any] | None) -> Address | None:
    return None if data is None else Address.model_validate(dict(data))


class Step:
    """Base: by default a step has overwrite semantics, so reconciling means doing it again."""

    name: str = ""

    async def call(self, ctx: StepContext) -> Answer:
        raise NotImplementedError

    async def reconcile(self, ctx: StepContext) -> Decision:
        return Redo({"rule": "overwrite: re-applying is safe"})


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
            return _settle_or_redo(ctx, {"rule": "no cart found by app_order_id", "found": 0})
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


NEED_CARD = (
    "card data is never stored: the card was lost with the worker before Violet took it; "
    "give it again with `orchestrator checkout pay REF --card FILE` (or - for stdin) or "
    "call provide_payment()"
)
NEED_CONFIRMATION = (
    "waiting for the shopper to confirm the payment intent (Stripe.js); then call confirm_payment()"
)
NEED_ACTION = "3-D Secure: the shopper must complete the challenge; then call confirm_payment()"


class ApplyPayment(Step):
    name = APPLY_PAYMENT

    async def call(self, ctx: StepContext) -> Outcome:
        payment = ctx.request["payment"]
        method: PaymentMethod
        if payment["type"] == "card":
            if ctx.card is None:
                return Park(NEED_PAYMENT, NEED_CARD)
            method = ctx.card
        elif payment["type"] == "token":
            method = TokenPayment(token=payment["token"], payment_provider=payment["provider"])
        else:
            method = IntentPayment()
        cart = await ctx.client.apply_payment(ctx.cart_id(), method)
        if isinstance(method, IntentPayment):
            _hand_out_secret(ctx, cart)
            return Park(REQUEST_CONFIRMATION, NEED_CONFIRMATION, cart)
        return Advance(_payment_trigger(ctx), cart)

    async def reconcile(self, ctx: StepContext) -> Decision:
        if ctx.request["payment"]["type"] != "card" or ctx.card is not None:
            return Redo({"rule": "overwrite: re-applying the payment is safe"})
        cart = await ctx.client.get_cart(ctx.cart_id())
        if cart.has_payment:
            return Advance(_payment_trigger(ctx), cart, {"rule": "Violet already holds the card"})
        return Park(NEED_PAYMENT, NEED_CARD, cart)


def _payment_trigger(ctx: StepContext) -> str:
    """Payment given again after it was lost is its own transition (awaiting_payment -> paid)."""
    return PROVIDE_PAYMENT if ctx.state == AWAITING_PAYMENT else APPLY_PAYMENT


def _hand_out_secret(ctx: StepContext, cart: Cart) -> None:
    if cart.payment_intent_client_secret is not None:
        ctx.handout["payment_intent_client_secret"] = (
            cart.payment_intent_client_secret.get_secret_value()
        )
    if cart.stripe_key:
        ctx.handout["stripe_key"] = cart.stripe_key


class Price(Step):
    name = PRICE

    async def call(self, ctx: StepContext) -> Outcome:
        return Advance(PRICE, await ctx.client.price_cart(ctx.cart_id()))


class Submit(Step):
    """Never blindly re-submitted: reconcile reads the cart and waits out the settle time."""

    name = SUBMIT

    async def call(self, ctx: StepContext) -> Answer:
        cart_id = ctx.cart_id()
        if ctx.last_cart is None:
            # Resumed: the cart was last seen long ago; Violet's errors arrive asynchronously.
            fresh = await ctx.client.get_cart(cart_id)
            if fresh.errors:
                return Fail(_cart_errors(fresh, self.name), fresh)
        try:
            cart = await ctx.client.submit(cart_id, app_order_id=ctx.app_order_id)
        except VioletCartErrors as exc:
            return Fail(error_summary(exc, self.name), exc.cart)
        return self.judge(ctx, cart)

    def judge(self, ctx: StepContext, cart: Cart) -> Answer:
        """Turn a submitted cart into an outcome, keeping partial acceptance per bag.

        Rejected means every bag settled and none accepted. While the order is PROCESSING or a
        bag is SUBMITTED the outcome is not known: `Pending` (read again), and once the reads
        are used up `submitted` with the bags as last seen: Violet holds the order, and may
        charge for it, from the moment it answered the submit.
        """
        if cart.status == OrderStatus.REQUIRES_ACTION:
            _hand_out_secret(ctx, cart)
            return Park(REQUIRE_ACTION, NEED_ACTION, cart)
        if cart.outcome_pending:
            unsettled = [b.id for b in cart.unsettled_bags]
            if not ctx.last_read:
                return Pending(cart, {"violet_status": cart.status, "unsettled_bags": unsettled})
            return Advance(
                SUBMIT,
                cart,
                {
                    "outcome_pending": True,
                    "rule": "Violet took the order but had not settled every bag when the "
                    "reads ran out: recorded as last seen",
                    "violet_status": cart.status,
                    "unsettled_bags": unsettled,
                    "accepted_bags": [b.id for b in cart.accepted_bags],
                    "rejected_bags": [b.id for b in cart.rejected_bags],
                },
            )
        if cart.bags and not cart.accepted_bags:
            return Fail(_cart_errors(cart, self.name, "every bag was rejected"), cart)
        detail = None
        if cart.rejected_bags:
            detail = {
                "partial": True,
                "accepted_bags": [b.id for b in cart.accepted_bags],
                "rejected_bags": [b.id for b in cart.rejected_bags],
            }
        return Advance(SUBMIT, cart, detail)

    async def reconcile(self, ctx: StepContext) -> Decision:
        cart = await ctx.client.get_cart(ctx.cart_id())
        if cart.status == OrderStatus.REQUIRES_ACTION and not ctx.reading_outcome:
            # After the shopper's confirmation Violet still shows REQUIRES_ACTION until the cart
            # is submitted again. (Read while settling our own submit, it asks for the shopper.)
            return Redo({"rule": "Violet awaits 3-D Secure; submitting again after confirmation"})
        if cart.is_submitted:
            return self.judge(ctx, cart)
        if ctx.reading_outcome:
            return self.unsubmitted_after_answer(ctx, cart)
        return _settle_or_redo(
            ctx, {"rule": "Violet shows the cart unsubmitted", "violet_status": cart.status}
        )

    def unsubmitted_after_answer(self, ctx: StepContext, cart: Cart) -> Answer:
        """Violet answered this drive's submit, yet the cart now reads unsubmitted: never
        submitted again (Violet took it, and may charge for it). Every bag refused in the
        cart's errors: failed with them. Otherwise read again, and once the reads are used up
        record it as submitted, as last seen, as `judge` does for an unsettled order."""
        refused = {error.bag_id for error in cart.errors}
        if cart.bags and all(bag.is_rejected or bag.id in refused for bag in cart.bags):
            return Fail(_cart_errors(cart, self.name, "every bag was rejected"), cart)
        detail = {
            "rule": "Violet answered the submit but shows the cart unsubmitted: read again, "
            "never submitted again",
            "violet_status": cart.status,
        }
        if not ctx.last_read:
            return Pending(cart, detail)
        return Advance(SUBMIT, cart, {**detail, "outcome_pending": True})


def _cart_errors(cart: Cart, step: str, message: str | None = None) -> dict[str, Any]:
    first = cart.errors[0] if cart.errors else None
    summary = {
        "class": "permanent",
        "type": (first.type if first else None) or "rejected",
        "message": message or (first.message if first else None) or "Violet refused the cart",
        "status": 200,
        "step": step,
    }
    decline = decline_in({"errors": [e.model_dump() for e in cart.errors]})
    if decline is not None:
        _as_decline(summary, decline)
    return summary


def _as_decline(summary: dict[str, Any], decline_code: str) -> None:
    summary["violet_type"] = summary["type"]
    summary["decline_code"] = decline_code
    summary["type"] = CARD_DECLINED


STEPS: dict[str, Step] = {
    step.name: step
    for step in (CreateCart(), ApplyCustomer(), ApplyShipping(), ApplyPayment(), Price(), Submit())
}
