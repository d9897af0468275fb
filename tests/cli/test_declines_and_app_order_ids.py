"""The CLI on a reused app_order_id (same request: exit 0, the existing checkout; a different
one: exit 2 naming the id, nothing changed) and on declines Violet carries inside `errors[]`
(listed by `--error-type card_declined`)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from orchestrator.cli.app import ExitCode
from tests.cli.conftest import Cli
from tests.fixtures.orchestrator import DECLINED, TOKEN, checkout_request


def test_starting_the_same_request_again_exits_0_with_the_same_checkout(cli: Cli) -> None:
    path = str(cli.write_request(checkout_request(payment=TOKEN)))
    first = cli.invoke("checkout", "start", path, "--json")
    again = cli.invoke("checkout", "start", path, "--json")
    assert (first.exit_code, again.exit_code) == (ExitCode.OK, ExitCode.OK), again.output
    assert json.loads(again.stdout)["id"] == json.loads(first.stdout)["id"]


def test_a_different_request_under_a_used_app_order_id_exits_2_naming_it(cli: Cli) -> None:
    request = checkout_request(payment=TOKEN)
    first = cli.invoke("checkout", "start", str(cli.write_request(request)), "--json")
    assert first.exit_code == ExitCode.OK, first.output
    before = cli.invoke("audit", request["app_order_id"], "--json").stdout
    other = {**request, "skus": [{"sku_id": 196592, "quantity": 1}]}
    second = cli.invoke("checkout", "start", str(cli.write_request(other, "other.json")))
    assert second.exit_code == ExitCode.BAD_INPUT, second.output
    assert request["app_order_id"] in second.stderr
    assert "skus" in second.stderr
    assert second.stdout == ""
    assert cli.invoke("audit", request["app_order_id"], "--json").stdout == before
    listed = json.loads(cli.invoke("list", "--json").stdout)
    assert listed["count"] == 1


@pytest.fixture
def declines_in_errors(cli: Cli) -> Iterator[None]:
    """The session's sandbox answers declines as a decline_code inside errors[] (restored)."""
    url = f"{cli.sandbox.control_url}/config"
    httpx.post(url, json={"decline_shape": "errors_entry"}, timeout=10).raise_for_status()
    yield
    restore = {"decline_shape": cli.sandbox.config.decline_shape}
    httpx.post(url, json=restore, timeout=10).raise_for_status()


@pytest.mark.usefixtures("declines_in_errors")
def test_a_decline_inside_errors_is_listed_as_card_declined(cli: Cli) -> None:
    request = checkout_request(payment=DECLINED)
    started = cli.invoke("checkout", "start", str(cli.write_request(request)), "--json")
    assert started.exit_code == ExitCode.CHECKOUT_FAILED, started.output
    error = json.loads(started.stdout)["last_error"]
    assert (error["type"], error["violet_type"]) == ("card_declined", "EXTERNAL_SUBMIT_CART")
    listed = json.loads(cli.invoke("list", "--error-type", "card_declined", "--json").stdout)
    assert [c["app_order_id"] for c in listed["checkouts"]] == [request["app_order_id"]]
