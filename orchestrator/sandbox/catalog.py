"""The sandbox's fixed world: merchants, SKUs, shipping, currencies, taxes and test payment data.

Module-level data so tests, docs and the demo can name exact SKUs and cards; ids and prices
follow Violet's own sandbox samples where those exist (merchants 10068 and 10189).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

STRIPE_KEY = "pk_test_UHg8oLvg4rrDCbvtqfwTE8qd"
"""Violet's sandbox Stripe publishable key (README §6, samples); the same for every cart."""

PHYSICAL = "PHYSICAL"
DIGITAL = "DIGITAL"

ECONOMY_ID = "9e912b3dae9b0e04b6f1facf08aa7cb2"
STANDARD_ID = "b55f835102bc5d6c9dea1c8e93e46baa"


@dataclass(frozen=True, slots=True)
class ShippingMethod:
    shipping_method_id: str
    label: str
    price: int
    carrier: str | None = None
    external_id: str | None = None
    type: str = "FLAT_RATE_PRICE"


@dataclass(frozen=True, slots=True)
class Merchant:
    id: int
    name: str
    platform: str
    commission_rate: int
    shipping_methods: tuple[ShippingMethod, ...] = ()
    rejects_submit: bool = False
    """The merchant platform refuses every order at submit (bag REJECTED)."""


@dataclass(frozen=True, slots=True)
class Sku:
    id: int
    merchant_id: int
    name: str
    brand: str
    price: int
    product_type: str
    weight: int
    product_id: str
    external_id: str
    thumbnail: str
    stock: int | None = None
    """Units on hand; None means unlimited."""
    async_error: str | None = None
    """If set, an EXTERNAL_ADD_ITEM error with this message appears on the cart one call later."""


ECONOMY = ShippingMethod(ECONOMY_ID, "Economy", 0)
STANDARD = ShippingMethod(STANDARD_ID, "Standard", 990)
GROUND = ShippingMethod("ground", "Ground", 500, carrier="OTHER", external_id="ground")

#: A shelf of small Shopify shops, one e-book each (merchant 20001 sells SKU 2000101, ...): enough
#: merchants for the per-merchant rate budgets' tests and benchmark (bench/merchants.py).
SHELF_MERCHANT_BASE = 20000
SHELF_SIZE = 20


def shelf_sku(merchant_id: int) -> int:
    """The one SKU a shelf merchant sells."""
    return merchant_id * 100 + 1


MERCHANTS: dict[int, Merchant] = {
    m.id: m
    for m in (
        Merchant(10068, "Space Drinks", "SHOPIFY", 15, (ECONOMY, STANDARD)),
        Merchant(10189, "the violet garden", "SHOPIFY", 20, (ECONOMY,)),
        Merchant(10300, "Pixel Press", "WOOCOMMERCE", 10),
        Merchant(10400, "Flaky Goods", "ECWID", 10, (GROUND,), rejects_submit=True),
        *(Merchant(m, f"Shelf Shop {m - SHELF_MERCHANT_BASE}", "SHOPIFY", 10) for m in range(
            SHELF_MERCHANT_BASE + 1, SHELF_MERCHANT_BASE + SHELF_SIZE + 1)),
    )
}  # fmt: skip

_CDN = "https://cdn.example.com/sandbox/"

SKUS: dict[int, Sku] = {
    s.id: s
    for s in (
        Sku(196777, 10068, "Spacewalk Slushie - 5 oz.", "The CBM Store", 1000, PHYSICAL, 3,
            "f9ad79876bfd4504b0fc400d5b2e7487", "42519626743983", _CDN + "slushie.png"),
        Sku(196999, 10068, "Moonwalk Fizz - 12 pack", "The CBM Store", 2400, PHYSICAL, 6,
            "0c6d7f1e2b8a4c1e9f3a5b7d9e1f2a3b", "42519626799999", _CDN + "fizz.png", stock=0),
        Sku(196888, 10068, "Comet Cola - limited", "The CBM Store", 1200, PHYSICAL, 3,
            "5e2a9c4b7d1f4e8a8b6c3d2e1f0a9b8c", "42519626788888", _CDN + "cola.png",
            async_error="Comet Cola - limited could not be added to the Shopify cart"),
        Sku(196592, 10189, "Pastel Flower Land - Extra-Large / Design One / Blue",
            "The Violet Garden", 3500, PHYSICAL, 3, "87f88388d8a44de6b7ea74d1b822926f",
            "45101059375405", _CDN + "tshirt.png"),
        Sku(196650, 10189, "Fire Fist Ace Runner - 43 / Power", "The Violet Garden", 19500,
            PHYSICAL, 4, "7f2312954c294c5eb0c6082ba924a2cb", "45101364805933",
            _CDN + "shoes.png"),
        Sku(300001, 10300, "Pixel Press Annual Digest (e-book)", "Pixel Press", 1200, DIGITAL,
            0, "a1b2c3d4e5f60718293a4b5c6d7e8f90", "pp-300001", _CDN + "digest.png"),
        Sku(300002, 10300, "Pixel Press Wallpaper Pack", "Pixel Press", 500, DIGITAL, 0,
            "b2c3d4e5f60718293a4b5c6d7e8f90a1", "pp-300002", _CDN + "wallpaper.png"),
        Sku(400001, 10400, "Flaky Croissant Tin", "Flaky Goods", 2000, PHYSICAL, 2,
            "c3d4e5f60718293a4b5c6d7e8f90a1b2", "400001001", _CDN + "tin.png"),
        *(Sku(shelf_sku(m), m, f"Shelf Shop {m - SHELF_MERCHANT_BASE} e-book", "Shelf", 800,
              DIGITAL, 0, f"{m:032x}", f"shelf-{m}", _CDN + "ebook.png") for m in range(
            SHELF_MERCHANT_BASE + 1, SHELF_MERCHANT_BASE + SHELF_SIZE + 1)),
    )
}  # fmt: skip

CURRENCIES: dict[str, tuple[str, Decimal]] = {
    "USD": ("$", Decimal("1")),
    "EUR": ("€", Decimal("0.92")),
    "GBP": ("£", Decimal("0.79")),
    "CAD": ("CA$", Decimal("1.36")),
}
"""Supported base currencies: symbol and rate from the catalog's USD prices."""

TAX_RULES: dict[tuple[str, str], tuple[tuple[str, Decimal], ...]] = {
    ("US", "NY"): (
        ("New York State Tax", Decimal("4")),
        ("New York City City Tax", Decimal("4.5")),
        ("Metropolitan Commuter Transportation District", Decimal("0.375")),
    ),
    ("US", "CA"): (("California State Tax", Decimal("7.25")),),
}
"""Sales tax lines per (country, state), in percent of a bag's physical sub_total (8.875% NY)."""


def convert(cents_usd: int, currency: str) -> int:
    """Catalog price in the cart's base currency, rounded half up to a whole cent."""
    rate = CURRENCIES[currency][1]
    if rate == 1:
        return cents_usd
    return int((cents_usd * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def tax_lines(country: str | None, state: str | None, taxable: int) -> list[tuple[str, float, int]]:
    """(description, rate, amount) per tax line for a taxable amount in cents."""
    rules = TAX_RULES.get(((country or "").upper(), (state or "").upper()), ())
    lines = []
    for description, rate in rules:
        amount = (taxable * rate / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        lines.append((description, float(rate), int(amount)))
    return lines


class CardOutcome(StrEnum):
    """What happens to a card or token: at payment apply (EXPIRED, BAD_CVC) or at submit."""

    SUCCEED = "succeed"
    DECLINE = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED = "expired_card"
    BAD_CVC = "incorrect_cvc"
    THREE_D_SECURE = "three_d_secure"


@dataclass(frozen=True, slots=True)
class TestCard:
    brand: str
    last_four: str
    outcome: CardOutcome

    __test__ = False  # not a pytest test class


TEST_CARDS: dict[str, TestCard] = {
    "4242424242424242": TestCard("visa", "4242", CardOutcome.SUCCEED),
    "5555555555554444": TestCard("mastercard", "4444", CardOutcome.SUCCEED),
    "378282246310005": TestCard("amex", "0005", CardOutcome.SUCCEED),
    "4000000000000002": TestCard("visa", "0002", CardOutcome.DECLINE),
    "4000000000009995": TestCard("visa", "9995", CardOutcome.INSUFFICIENT_FUNDS),
    "4000000000000069": TestCard("visa", "0069", CardOutcome.EXPIRED),
    "4000000000000127": TestCard("visa", "0127", CardOutcome.BAD_CVC),
    "4000002760003184": TestCard("visa", "3184", CardOutcome.THREE_D_SECURE),
    "4000003800000200": TestCard("visa", "0200", CardOutcome.THREE_D_SECURE),
}
"""Violet/Stripe test cards (README §6). Any other Luhn-valid number succeeds."""

TEST_TOKENS: dict[str, TestCard] = {
    "tok_visa": TestCard("visa", "4242", CardOutcome.SUCCEED),
    "tok_mastercard": TestCard("mastercard", "4444", CardOutcome.SUCCEED),
    "tok_amex": TestCard("amex", "0005", CardOutcome.SUCCEED),
    "tok_chargeDeclined": TestCard("visa", "0002", CardOutcome.DECLINE),
    "tok_chargeDeclinedInsufficientFunds": TestCard("visa", "9995", CardOutcome.INSUFFICIENT_FUNDS),
    "tok_threeDSecure2Required": TestCard("visa", "3184", CardOutcome.THREE_D_SECURE),
}
"""Stripe test tokens; an unknown token is refused at payment apply."""


def luhn_valid(number: str) -> bool:
    """The checksum every real card number satisfies (catches 4242424242424241)."""
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_brand(number: str) -> str:
    """Brand from the card's prefix, as Stripe reports it."""
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or number[:1] == "2":
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    return "unknown"
