"""`CheckoutRequest`: what a caller asks for, validated before anything is written or sent.

Field names follow Violet's, so a reader of Violet's docs recognises them. Card data lives only in
`CardPaymentRequest` as `SecretStr` and is stripped by `persisted()`: the row keeps a redacted copy.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestrator import sensitive
from orchestrator.errors import InvalidRequest

_APP_ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        """Refuse here, naming the field, what the database would refuse later in its own words
        (which may quote the neighbouring text): NUL characters, and anything the one
        specification of what is secret finds (card numbers, client secrets, tokens, header
        lines, the configured credentials)."""
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError("must not contain a NUL character")
            finding = sensitive.find_in_text(value)
            if finding is not None:
                raise ValueError(f"contains {finding.rule.what}")
        return value

    @classmethod
    def parse(cls, data: Any) -> Self:
        """Validate `data`, raising one `InvalidRequest` that names every bad field (and never
        echoes a value: it may be card data)."""
        if isinstance(data, cls):
            return data
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidRequest.from_validation(exc) from None


class SkuRequest(_Strict):
    # strict: JSON's true is not a quantity of 1, nor "2" a number
    sku_id: int = Field(gt=0, le=2**63 - 1, strict=True)
    quantity: int = Field(default=1, ge=1, le=1000, strict=True)
    #: The merchant selling the SKU, when the caller knows it (Violet's offers name it): the
    #: cart's creation then waits its turn on that merchant's rate budget. Never sent to Violet.
    merchant_id: int | None = Field(default=None, gt=0, le=2**63 - 1, strict=True)


class CustomerRequest(_Strict):
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    email: EmailStr


class AddressRequest(_Strict):
    address_1: str = Field(min_length=1, max_length=255)
    address_2: str | None = Field(default=None, max_length=255)
    city: str = Field(min_length=1, max_length=100)
    state: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2, e.g. US")
    phone: str | None = Field(default=None, max_length=40)


class ShippingRequest(_Strict):
    """How to choose one shipping method per bag: the cheapest, or the first Violet offers."""

    policy: Literal["cheapest", "first"] = "cheapest"


class CardPaymentRequest(_Strict):
    type: Literal["card"]
    card_number: SecretStr
    card_cvc: SecretStr
    card_exp_month: int = Field(ge=1, le=12)
    card_exp_year: int = Field(ge=2000, le=2100)
    card_postal_code: str = Field(min_length=1, max_length=20)

    @field_validator("card_number")
    @classmethod
    def _luhn(cls, value: SecretStr) -> SecretStr:
        digits = re.sub(r"[ -]", "", value.get_secret_value())
        ascii_digits = re.fullmatch(r"[0-9]{12,19}", digits) is not None  # ASCII only
        if not ascii_digits or not sensitive.is_luhn_valid(digits):
            raise ValueError("not a valid card number")
        return SecretStr(digits)

    @field_validator("card_cvc")
    @classmethod
    def _cvc(cls, value: SecretStr) -> SecretStr:
        if not re.fullmatch(r"[0-9]{3,4}", value.get_secret_value()):
            raise ValueError("must be 3 or 4 digits")
        return value

    @field_validator("card_exp_year")
    @classmethod
    def _not_expired(cls, year: int, info: ValidationInfo) -> int:
        month = info.data.get("card_exp_month")  # validated first (field order)
        today = datetime.now(UTC)
        if month is not None and (year, month) < (today.year, today.month):
            raise ValueError("the card has expired (with card_exp_month)")
        return year

    @property
    def last_four(self) -> str:
        return self.card_number.get_secret_value()[-4:]


class TokenPaymentRequest(_Strict):
    type: Literal["token"]
    token: str = Field(min_length=1, max_length=255)
    provider: str = Field(default="STRIPE", min_length=1, max_length=40)


class IntentPaymentRequest(_Strict):
    type: Literal["intent"]


PaymentRequest = Annotated[
    CardPaymentRequest | TokenPaymentRequest | IntentPaymentRequest, Field(discriminator="type")
]


class CheckoutRequest(_Strict):
    """One checkout: SKUs, shopper, addresses, shipping choice and payment."""

    app_order_id: str = Field(default_factory=lambda: new_app_order_id())
    currency: str = "USD"
    skus: list[SkuRequest] = Field(min_length=1, max_length=100)
    customer: CustomerRequest
    shipping_address: AddressRequest | None = None
    billing_address: AddressRequest | None = None
    shipping: ShippingRequest = ShippingRequest()
    payment: PaymentRequest

    @field_validator("app_order_id", mode="before")
    @classmethod
    def _app_order_id_default(cls, value: Any) -> Any:
        return new_app_order_id() if value is None else value  # null means "make one up"

    @field_validator("app_order_id")
    @classmethod
    def _app_order_id(cls, value: str) -> str:
        if not _APP_ORDER_ID.match(value):
            raise ValueError("1-128 characters: letters, digits and . _ : @ / - (not first)")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not _CURRENCY.match(value):
            # The shape only: which currencies a merchant sells in is Violet's to say.
            raise ValueError("must be 3 capital letters, an ISO 4217 code such as USD")
        return value

    @model_validator(mode="after")
    def _distinct_skus(self) -> CheckoutRequest:
        ids = [line.sku_id for line in self.skus]
        if len(ids) != len(set(ids)):
            raise ValueError("skus: each sku_id may appear once (use quantity)")
        return self

    def persisted(self) -> dict[str, Any]:
        """The request as stored: card number reduced to its last four, CVC and expiry dropped.

        Raises InvalidRequest naming the field if a value holds a configured credential (the
        process registers them when it builds its Violet client, which may be after parsing)."""
        data = self.model_dump(mode="json", exclude={"payment"})
        for sku in data["skus"]:  # stored only when given: an older request reads the same
            if sku.get("merchant_id") is None:
                sku.pop("merchant_id", None)
        payment = self.payment
        if isinstance(payment, CardPaymentRequest):
            data["payment"] = {"type": "card", "last_four": payment.last_four}
        else:
            data["payment"] = payment.model_dump(mode="json")
        if sensitive.holds_credential("\x00".join(_strings(data))):  # one test for all values
            paths = _credential_paths(data, "")
            if paths:
                raise InvalidRequest(
                    [(path, f"contains {sensitive.CREDENTIAL.what}") for path in paths]
                )
        return data

    def differences(self, stored: Mapping[str, Any]) -> list[str]:
        """The top-level fields in which this request differs from a stored one (`persisted()`
        form), in order; empty when it is the same request. A card is compared by what is
        stored of it, its last four digits: CVC, expiry and postal code are never kept."""
        mine = self.persisted()
        return [name for name in mine if mine[name] != stored.get(name)] + [
            name for name in stored if name not in mine and stored[name] is not None
        ]


def new_app_order_id() -> str:
    """A fresh id in base32 letters and digits 2-7: never a long digit run (see below)."""
    return "ord-" + base64.b32encode(uuid.uuid4().bytes).decode().rstrip("=").lower()


def _strings(value: Any) -> list[str]:
    """Every string in a JSON-like value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _credential_paths(value: Any, path: str) -> list[str]:
    """The dotted paths of the strings in `value` holding a configured credential."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _credential_paths(v, f"{path}{k}.")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _credential_paths(v, f"{path}{i}.")]
    if isinstance(value, str) and sensitive.holds_credential(value):
        return [path.rstrip(".")]
    return []


def contains_card_number(text: str) -> bool:
    """Whether `text` holds a card number by the one specification (orchestrator.sensitive)."""
    finding = sensitive.find_in_text(text, credentials=False)
    return finding is not None and finding.rule is sensitive.CARD_NUMBER
