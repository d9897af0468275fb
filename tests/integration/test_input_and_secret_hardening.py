"""Edges of "no card data or secret leaks" and "bad input names its field, changes nothing".

Each test guards a way the promise broke, and failed before its fix: card data echoed by
`provide_payment`'s error, the database password in `repr(Settings)` and `orchestrator config`,
NULs and card numbers in free text reaching the database, non-ASCII digits taken as a card,
expired cards, oversized ids, malformed refs and settings, CLI inputs that exited as "unexpected".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import CheckoutNotFound, InvalidRequest, Orchestrator
from orchestrator.cli.app import ExitCode
from orchestrator.config import Settings
from orchestrator.sandbox import SandboxControl
from tests.cli.conftest import Cli, sandbox_env
from tests.fixtures.db import libpq_url
from tests.fixtures.orchestrator import ADDRESS, VISA, checkout_request

CARD = "4242424242424242"
NOWHERE = "http://127.0.0.1:9/v1"  # nothing in these CLI tests may reach Violet


async def _rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM checkouts"))).scalar_one()


async def _assert_nothing_changed(engine: AsyncEngine, control: SandboxControl) -> None:
    assert await _rows(engine) == 0, "a checkout row was written for a bad request"
    assert (await control.stats())["carts_created"] == 0, "Violet was called for a bad request"


def _rows_sync(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute("SELECT count(*) FROM checkouts").fetchone()
    assert row is not None
    return int(row[0])


def _fields(caught: pytest.ExceptionInfo[InvalidRequest]) -> set[str]:
    return {name for name, _ in caught.value.fields}


@pytest.fixture
def bad_cli(database_url: str, tmp_path: Path) -> Cli:
    """The CLI on a fresh test database; Violet points nowhere (bad input must not reach it)."""
    return Cli(sandbox_env(database_url, NOWHERE), None, tmp_path)  # type: ignore[arg-type]


# -- 1. secrets ------------------------------------------------------------------------------


async def test_provide_payment_with_a_bad_card_dict_names_the_field_and_never_echoes_card_data(
    orch: Orchestrator,
) -> None:
    """api.py provide_payment: `CardPaymentRequest(**payment)` raises pydantic's raw
    ValidationError, whose message carries `input_value=` (the card number, the CVC)."""
    checkout = await orch.start(checkout_request(), run=False)
    orch._cards.clear()  # another process drives it: it waits for the card
    assert (await orch.run(checkout.id)).state == "awaiting_payment"
    bad_cards: list[tuple[dict[str, Any], str]] = [
        ({**VISA, "card_number": "4242424242424241"}, "4242424242424241"),  # fails Luhn
        ({**VISA, "card_number": int(CARD)}, CARD),  # wrong type
        ({**{k: v for k, v in VISA.items() if k != "card_cvc"}, "cvc": "947"}, "947"),  # typo
    ]
    for payment, secret in bad_cards:
        with pytest.raises(InvalidRequest) as caught:
            await orch.provide_payment(checkout.id, payment)
        assert secret not in f"{caught.value} {caught.value!r}"
    assert (await orch.get(checkout.id)).state == "awaiting_payment"


async def test_nul_in_a_field_after_a_card_number_does_not_put_the_card_in_the_error(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """PostgreSQL's JSON error CONTEXT quotes the request text around the NUL, so a card number
    typed into address_2 ends up in the exception message (and on the CLI's stderr)."""
    address = {**ADDRESS, "address_2": CARD + "\x00"}
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(shipping_address=address))
    assert CARD not in str(caught.value)
    await _assert_nothing_changed(engine, sandbox_control)


def test_settings_repr_and_config_command_hide_the_database_password(bad_cli: Cli) -> None:
    """Settings.database_url is a plain str: repr(Settings) and `orchestrator config` ("secrets
    masked") print the PostgreSQL password in clear."""
    url = "postgresql://postgres:hunter2@127.0.0.1:5432/somewhere"
    assert "hunter2" not in repr(Settings(database_url=url))
    bad_cli.env["ORCHESTRATOR_DATABASE_URL"] = url
    result = bad_cli.invoke("config")
    assert result.exit_code == 0
    assert "hunter2" not in result.output


# -- 2. bad input: library --------------------------------------------------------------------


async def test_card_number_in_a_free_text_field_is_refused_naming_the_field(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """Only app_order_id is checked; elsewhere the database tripwire refuses the insert and the
    caller gets a raw psycopg IntegrityError that names no field (CLI: exit 1, 'unexpected')."""
    customer = {"first_name": CARD, "last_name": "Lovelace", "email": "ada@example.com"}
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(customer=customer))
    assert "customer.first_name" in _fields(caught)
    assert CARD not in str(caught.value)
    await _assert_nothing_changed(engine, sandbox_control)


async def test_nul_character_is_refused_naming_the_field(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """A NUL passes validation and PostgreSQL refuses it: raw UntranslatableCharacter."""
    customer = {"first_name": "Ada\x00", "last_name": "Lovelace", "email": "ada@example.com"}
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(customer=customer))
    assert "customer.first_name" in _fields(caught)
    await _assert_nothing_changed(engine, sandbox_control)


async def test_sku_id_beyond_64_bits_is_refused_naming_the_field(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """`sku_id: int = Field(gt=0)` has no upper bound: orjson raises a bare TypeError."""
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(skus=[{"sku_id": 10**30, "quantity": 1}]))
    assert "skus.0.sku_id" in _fields(caught)
    await _assert_nothing_changed(engine, sandbox_control)


async def test_boolean_for_an_integer_field_is_refused(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """Lax pydantic turns JSON `true` into quantity 1 and the order is placed."""
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(skus=[{"sku_id": 196777, "quantity": True}]))
    assert "skus.0.quantity" in _fields(caught)
    await _assert_nothing_changed(engine, sandbox_control)


async def test_card_number_in_non_ascii_digits_is_refused_before_anything_is_written(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """`str.isdigit()` and `int()` accept fullwidth digits: the request passes validation, a row
    and a Violet cart are created, the card goes to Violet, then the tripwire refuses the
    payment's call record (its mask keeps the fullwidth digits) and the checkout is left leased
    with a payment in flight, raising a raw IntegrityError."""
    fullwidth = "".join(chr(0xFF10 + int(d)) for d in CARD)  # U+FF10 is FULLWIDTH DIGIT ZERO
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(payment={**VISA, "card_number": fullwidth}))
    assert "payment.card_number" in _fields(caught)
    await _assert_nothing_changed(engine, sandbox_control)


async def test_expired_card_is_refused_before_anything_is_written(
    orch: Orchestrator, engine: AsyncEngine, sandbox_control: SandboxControl
) -> None:
    """card_exp_year only has ge=2000: an expired card creates a row and a Violet cart, then the
    checkout fails at apply_payment with Violet's expired_card."""
    expired = {**VISA, "card_exp_month": 1, "card_exp_year": 2001}
    with pytest.raises(InvalidRequest) as caught:
        await orch.start(checkout_request(payment=expired))
    assert any(name.startswith("payment.card_exp") for name in _fields(caught))
    await _assert_nothing_changed(engine, sandbox_control)


@pytest.mark.parametrize(
    "ref",
    ["²", "a\x00b", 424242],
    ids=["unicode-digit", "nul", "int-violet-order-id"],
)
async def test_get_with_a_malformed_ref_is_not_found(orch: Orchestrator, ref: Any) -> None:
    """Repository.get: '²'.isdigit() but int('²') raises ValueError; a NUL reaches PostgreSQL
    (psycopg DataError); an int (a Violet order id, as Checkout.violet_order_id holds it) gives
    AttributeError from uuid.UUID."""
    with pytest.raises((CheckoutNotFound, InvalidRequest)):
        await orch.get(ref)


# -- 2. bad input: CLI ------------------------------------------------------------------------


def _deep(path: Path) -> None:
    path.write_text('{"skus": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")


def _latin1(path: Path) -> None:
    document = json.dumps(checkout_request(app_order_id="cafe")).replace("cafe", "caf\xe9")
    path.write_bytes(document.encode("latin-1"))


def _request(**overrides: Any) -> Any:
    def write(path: Path) -> None:
        path.write_text(json.dumps(checkout_request(**overrides)), encoding="utf-8")

    return write


@pytest.mark.parametrize(
    ("writer", "field"),
    [
        (_deep, None),
        (_latin1, None),
        (_request(skus=[{"sku_id": 10**30, "quantity": 1}]), "skus.0.sku_id"),
        (
            _request(customer={"first_name": CARD, "last_name": "L", "email": "a@example.com"}),
            "customer.first_name",
        ),
    ],
    ids=["deeply-nested-json", "not-utf8", "sku-id-too-big", "card-number-in-name"],
)
def test_cli_bad_request_file_exits_2_naming_the_file_or_field(
    bad_cli: Cli, database_url: str, writer: Any, field: str | None
) -> None:
    """`_read_request` catches only OSError and JSONDecodeError (RecursionError and
    UnicodeDecodeError escape), and request errors found by the database come out as
    'error: unexpected ...' with exit 1 ("the checkout failed")."""
    path = bad_cli.workdir / "request.json"
    writer(path)
    result = bad_cli.invoke("checkout", "start", str(path))
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert (field or "request.json") in result.stderr
    assert CARD not in result.stderr
    assert "unexpected" not in result.stderr
    assert _rows_sync(database_url) == 0


def test_cli_infinite_lease_seconds_is_a_bad_setting(bad_cli: Cli, database_url: str) -> None:
    """ORCHESTRATOR_LEASE_SECONDS=inf passes `gt=0`; the insert then fails in PostgreSQL with
    'unexpected DatetimeFieldOverflow: interval out of range', exit 1, no setting named."""
    bad_cli.env["ORCHESTRATOR_LEASE_SECONDS"] = "inf"
    path = bad_cli.write_request(checkout_request())
    result = bad_cli.invoke("checkout", "start", str(path))
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert "ORCHESTRATOR_LEASE_SECONDS" in result.stderr
    assert _rows_sync(database_url) == 0


def test_cli_malformed_database_url_exits_2_naming_the_setting(bad_cli: Cli) -> None:
    """A non-numeric port passes Settings' prefix check and fails later as
    'unexpected ValueError: invalid literal for int()', exit 1, the setting not named."""
    bad_cli.env["ORCHESTRATOR_DATABASE_URL"] = "postgresql://postgres:hunter2@127.0.0.1:abc/db"
    result = bad_cli.invoke("status", "order-1")
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert "ORCHESTRATOR_DATABASE_URL" in result.stderr
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("status", "²"), ExitCode.NOT_FOUND),
        (("audit", "²"), ExitCode.NOT_FOUND),
        (("list", "--since", "99999999d"), ExitCode.BAD_INPUT),
        (("sandbox", "serve", "--port", "99999"), ExitCode.BAD_INPUT),
    ],
    ids=["status-unicode-digit", "audit-unicode-digit", "since-overflow", "port-out-of-range"],
)
def test_cli_bad_arguments_get_their_documented_exit_code(
    bad_cli: Cli, args: tuple[str, ...], code: ExitCode
) -> None:
    """ValueError (int('²')), OverflowError (timedelta, bind()) come out as 'unexpected ...'
    with exit 1, which the docs reserve for a failed checkout."""
    result = bad_cli.invoke(*args)
    assert result.exit_code == code, result.stderr
    assert "unexpected" not in result.stderr


async def test_a_null_app_order_id_gets_one_made_up(orch: Orchestrator) -> None:
    """docs/cli.md says app_order_id is optional; JSON null meant "invalid string" before."""
    request = {**checkout_request(), "app_order_id": None}
    done = await orch.start(request)
    assert done.state == "submitted" and done.app_order_id.startswith("ord-")


async def test_not_found_never_repeats_a_card_number_given_as_a_reference(
    orch: Orchestrator,
) -> None:
    with pytest.raises(CheckoutNotFound) as caught:
        await orch.get(CARD)
    assert CARD not in str(caught.value)
