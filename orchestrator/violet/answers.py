"""Violet's answers read into models, or into the classified error they amount to.

Every function here records the exchange it reads (calls.py) exactly once, on success or
failure, so the client's endpoint methods only say which answer they expect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from orchestrator.sensitive import redact_excerpt
from orchestrator.violet.calls import (
    record_answer,
    recording,
    summarize_cart,
    summarize_error_body,
)
from orchestrator.violet.errors import (
    VioletCartErrors,
    VioletError,
    VioletOutcomeUnknown,
    VioletPermanentError,
    error_from_response,
)
from orchestrator.violet.models import BagShippingMethods, Cart, _OrderPage
from orchestrator.violet.ops import SUBMIT, Op
from orchestrator.violet.redact import scrub_text

__all__ = [
    "answer_error",
    "failure",
    "parse_order_page",
    "parse_shipping_methods",
    "read_cart",
    "read_json",
    "read_parsed",
]

_T = TypeVar("_T")

_SHIPPING_ADAPTER: Final = TypeAdapter(list[BagShippingMethods])
_CART_LIST_ADAPTER: Final = TypeAdapter(list[Cart])


def failure(op: Op, path: str, response: httpx.Response, body: Any) -> VioletError:
    """Classify a non-2xx answer, record it, and return the exception to raise."""
    err = error_from_response(
        op=op.name,
        method=op.method,
        path=path,
        status=response.status_code,
        content=response.content,
        headers=response.headers,
        read=op.read,
    )
    record_answer(op, path, response, body, summarize_error_body(err.body), err)
    return err


def answer_error(op: Op, path: str, response: httpx.Response, err: VioletError) -> VioletError:
    """`err`, about a 2xx answer that still cannot be used, given the answer's context and
    recorded; returned for the caller to raise."""
    err.status = response.status_code
    err.method = op.method
    err.path = path
    err.op = op.name
    err.request_id = response.headers.get("x-request-id")
    record_answer(op, path, response, None, None, err)
    return err


def read_json(op: Op, path: str, response: httpx.Response) -> Any:
    """The answer as JSON; the caller records it once it has checked what it needs."""
    try:
        return response.json()
    except ValueError:
        raise _unreadable(op, path, response, None) from None


def read_cart(op: Op, path: str, response: httpx.Response, body: Any, *, check: bool) -> Cart:
    """Parse a cart answer; with ``check``, blocking ``errors[]`` raise VioletCartErrors."""
    try:
        cart = Cart.model_validate_json(response.content)
    except ValidationError:
        raise _unreadable(op, path, response, body) from None
    # A submit answer is an error only once Violet has refused it: not while a bag is
    # accepted, nor while the outcome is still pending (PROCESSING, bags SUBMITTED).
    if (
        check
        and cart.errors
        and not (op is SUBMIT and (cart.accepted_bags or cart.outcome_pending))
    ):
        err = _cart_errors(cart, op, path, response)
        record_answer(op, path, response, body, summarize_cart(cart), err)
        raise err
    if recording():
        record_answer(op, path, response, body, summarize_cart(cart), None)
    return cart


def read_parsed(
    op: Op,
    path: str,
    response: httpx.Response,
    parse: Callable[[bytes], _T],
    summarize: Callable[[_T], dict[str, Any] | None],
) -> _T:
    """Parse an answer that is not a cart; `summarize` gives what the audit keeps of it."""
    try:
        value = parse(response.content)
    except ValidationError:
        raise _unreadable(op, path, response, None) from None
    if recording():
        record_answer(op, path, response, None, summarize(value), None)
    return value


def parse_shipping_methods(content: bytes) -> list[BagShippingMethods]:
    return _SHIPPING_ADAPTER.validate_json(content)


def parse_order_page(content: bytes) -> list[Cart]:
    """An order search answer, read whether it comes as a page (``content``) or a bare list."""
    if content.lstrip()[:1] == b"[":
        return _CART_LIST_ADAPTER.validate_json(content)
    return _OrderPage.model_validate_json(content).content


def _unreadable(op: Op, path: str, response: httpx.Response, body: Any) -> VioletError:
    # A write that answered 2xx was applied; only its answer is lost.
    cls = VioletPermanentError if op.read else VioletOutcomeUnknown
    err = cls(
        "unreadable answer from Violet",
        status=response.status_code,
        body=redact_excerpt(response.text, 200),
        method=op.method,
        path=path,
        op=op.name,
        request_id=response.headers.get("x-request-id"),
    )
    record_answer(op, path, response, body, None, err)
    return err


def _cart_errors(cart: Cart, op: Op, path: str, response: httpx.Response) -> VioletCartErrors:
    first = cart.errors[0]
    detail = "; ".join(
        f"{e.type or 'UNKNOWN'}"
        + (f" (bag {e.bag_id})" if e.bag_id is not None else "")
        + (f": {scrub_text(e.message)}" if e.message else "")
        for e in cart.errors[:5]
    )
    return VioletCartErrors(
        f"cart {cart.id} has {len(cart.errors)} blocking error(s): {detail}",
        cart=cart,
        errors=cart.errors,
        status=response.status_code,
        body={"errors": summarize_cart(cart)["errors"]},
        method=op.method,
        path=path,
        op=op.name,
        request_id=response.headers.get("x-request-id"),
        error_type=first.type,
    )
