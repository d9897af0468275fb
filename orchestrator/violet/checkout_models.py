"""What a checkout sends Violet: the shopper, their addresses, the SKU lines, the payment and
the shipping choices (Violet echoes the customer and addresses back, hence the lenient types)."""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BeforeValidator, SecretStr

from orchestrator.violet.model_base import Loose

__all__ = [
    "Address",
    "AnyAddress",
    "AnyCustomer",
    "CardPayment",
    "Customer",
    "IntentPayment",
    "PaymentMethod",
    "ShippingSelection",
    "SkuLine",
    "TokenPayment",
]


class Address(Loose):
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


AnyAddress = Annotated[Address | None, BeforeValidator(_lenient_address)]


class Customer(Loose):
    """The shopper, as applied to a cart (guest checkout: Violet keeps no customer records)."""

    first_name: str
    last_name: str
    email: str
    shipping_address: AnyAddress = None
    billing_address: AnyAddress = None
    same_address: bool | None = None


def _lenient_customer(value: Any) -> Any:
    """Violet may answer with a partial customer; fill blanks rather than fail."""
    if isinstance(value, dict):
        missing = [k for k in ("first_name", "last_name", "email") if value.get(k) is None]
        if missing:
            value = {**value, **dict.fromkeys(missing, "")}
    return value


#: A customer as Violet answers it (partial ones filled in).
AnyCustomer = Annotated[Customer | None, BeforeValidator(_lenient_customer)]


class SkuLine(Loose):
    """One line of a new cart: a catalog SKU and a quantity."""

    sku_id: int
    quantity: int = 1


class CardPayment(Loose):
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


class TokenPayment(Loose):
    """A provider token (e.g. a Stripe ``tok_...``) for the API-only payment path."""

    token: str
    payment_provider: str = "STRIPE"

    def to_body(self) -> dict[str, Any]:
        return {"token": self.token, "payment_provider": self.payment_provider}


class IntentPayment(Loose):
    """Violet's recommended path: a Stripe PaymentIntent confirmed by the shopper's front end."""

    def to_body(self) -> dict[str, Any]:
        return {"intent_based_capture": True}


PaymentMethod = CardPayment | TokenPayment | IntentPayment


class ShippingSelection(Loose):
    """The shipping method chosen for one bag."""

    bag_id: int
    shipping_method_id: str
