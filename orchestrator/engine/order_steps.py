"""The steps that pay for and place the order: apply the payment, price, submit.

Submit is never blindly re-submitted: its reconcile reads the cart and waits out the settle time,
and `judge` keeps partial acceptance per bag.
"""

from __future__ import annotations

from orchestrator.engine.decisions import (
    Advance,
    Answer,
    Decision,
    Fail,
    Outcome,
    Park,
    Pending,
    Redo,
    Step,
    StepContext,
    cart_errors,
    error_summary,
    settle_or_redo,
)
from orchestrator.states import (
    APPLY_PAYMENT,
    AWAITING_PAYMENT,
    NEED_PAYMENT,
    PRICE,
    PROVIDE_PAYMENT,
    REQUEST_CONFIRMATION,
    REQUIRE_ACTION,
    SUBMIT,
)
from orchestrator.violet import (
    Cart,
    IntentPayment,
    OrderStatus,
    PaymentMethod,
    TokenPayment,
    VioletCartErrors,
)

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

    def paces_first_call(self, ctx: StepContext) -> bool:
        return _payment_in_hand(ctx)  # else it parks without a call

    async def reconcile(self, ctx: StepContext) -> Decision:
        if _payment_in_hand(ctx):
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


def _payment_in_hand(ctx: StepContext) -> bool:
    """Whether the payment can be applied now: anything but a card, or a card this process
    holds in memory (a card is never stored, so a resumed card payment waits for it)."""
    return ctx.request["payment"]["type"] != "card" or ctx.card is not None


class Price(Step):
    name = PRICE

    async def call(self, ctx: StepContext) -> Outcome:
        return Advance(PRICE, await ctx.client.price_cart(ctx.cart_id()))


class Submit(Step):
    """Never blindly re-submitted: reconcile reads the cart and waits out the settle time."""

    name = SUBMIT

    def paces_first_call(self, ctx: StepContext) -> bool:
        return ctx.last_cart is not None  # resumed, it reads the cart (not paced) first

    async def call(self, ctx: StepContext) -> Answer:
        cart_id = ctx.cart_id()
        if ctx.last_cart is None:
            # Resumed: the cart was last seen long ago; Violet's errors arrive asynchronously.
            fresh = await ctx.client.get_cart(cart_id)
            if fresh.errors:
                return Fail(cart_errors(fresh, self.name), fresh)
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
            return Fail(cart_errors(cart, self.name, "every bag was rejected"), cart)
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
        return settle_or_redo(
            ctx, {"rule": "Violet shows the cart unsubmitted", "violet_status": cart.status}
        )

    def unsubmitted_after_answer(self, ctx: StepContext, cart: Cart) -> Answer:
        """Violet answered this drive's submit, yet the cart now reads unsubmitted: never
        submitted again (Violet took it, and may charge for it). Every bag refused in the
        cart's errors: failed with them. Otherwise read again, and once the reads are used up
        record it as submitted, as last seen, as `judge` does for an unsettled order."""
        refused = {error.bag_id for error in cart.errors}
        if cart.bags and all(bag.is_rejected or bag.id in refused for bag in cart.bags):
            return Fail(cart_errors(cart, self.name, "every bag was rejected"), cart)
        detail = {
            "rule": "Violet answered the submit but shows the cart unsubmitted: read again, "
            "never submitted again",
            "violet_status": cart.status,
        }
        if not ctx.last_read:
            return Pending(cart, detail)
        return Advance(SUBMIT, cart, {**detail, "outcome_pending": True})
