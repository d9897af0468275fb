"""The console's parts without a database: logins, CSRF tokens, the list filter, the plot."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.audit import FailureCount, SettleWindow
from orchestrator.config import load_settings
from orchestrator.console.auth import Authenticator, Principal, is_loopback_host
from orchestrator.console.csrf import CsrfTokens
from orchestrator.console.filters import ListFilter, parse_time
from orchestrator.console.plot import failure_chart
from orchestrator.errors import InvalidRequest

SETTINGS = load_settings(
    console_users="alice:operator:alice-password,victor:viewer:victor-password",
    console_tokens="ci:viewer:ci-token-0123456789abcdef",
)


def _basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def _auth() -> Authenticator:
    return Authenticator(SETTINGS.console_users or (), SETTINGS.console_tokens or ())


def test_a_login_is_its_name_role_and_secret_nothing_else() -> None:
    auth = _auth()
    local = {"client_host": "127.0.0.1", "host_header": "127.0.0.1:8470"}
    assert auth.identify(_basic("alice", "alice-password"), **local) == Principal(
        "alice", "operator", "basic"
    )
    assert auth.identify("Bearer ci-token-0123456789abcdef", **local) == Principal(
        "ci", "viewer", "bearer"
    )
    assert auth.identify(_basic("alice", "victor-password"), **local) is None
    assert auth.identify(_basic("ci", "ci-token-0123456789abcdef"), **local) is None
    assert auth.identify("Bearer alice-password", **local) is None
    assert auth.identify(None, **local) is None  # configured: being local is not enough


def test_without_logins_only_a_local_request_to_a_local_name_is_let_in() -> None:
    auth = Authenticator()
    me = auth.identify(None, client_host="127.0.0.1", host_header="localhost:8470")
    assert me is not None and me.may_act and me.via == "local"
    assert auth.identify(None, client_host="::1", host_header="[::1]:8470") == me
    assert auth.identify(None, client_host="10.0.0.5", host_header="localhost:8470") is None
    assert auth.identify(None, client_host="127.0.0.1", host_header="evil.example") is None
    assert auth.identify(None, client_host=None, host_header="localhost") is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.2", False),
        ("example.com", False),
    ],
)
def test_which_addresses_are_this_machine(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_a_csrf_token_is_for_one_principal_one_key_and_a_while() -> None:
    tokens = CsrfTokens(b"k" * 32, max_age=3600)
    alice = Principal("alice", "operator", "basic")
    token = tokens.issue(alice, now=1_000_000)
    assert tokens.valid(token, alice, now=1_000_100)
    assert not tokens.valid(token, Principal("bob", "operator", "basic"), now=1_000_100)
    assert not tokens.valid(token, Principal("alice", "viewer", "basic"), now=1_000_100)
    assert not tokens.valid(token, alice, now=1_000_000 + 3601)  # expired
    assert not CsrfTokens(b"x" * 32).valid(token, alice, now=1_000_100)  # another key
    issued, mac = token.split(".")
    assert not tokens.valid(f"{int(issued) + 1}.{mac}", alice, now=1_000_100)
    for junk in (None, "", ".", "abc.def", "1000000", "1000000." + "A" * 300):
        assert not tokens.valid(junk, alice, now=1_000_100)


def test_the_list_filter_reads_back_what_it_writes() -> None:
    chosen = ListFilter.from_query(
        {"state": "failed", "error_type": "card_declined", "since": "24h", "stuck": "1", "x": "y"}
    )
    assert chosen == ListFilter(state="failed", error_type="card_declined", since="24h", stuck=True)
    assert ListFilter.from_query(chosen.params()) == chosen
    assert ListFilter.from_query({}).is_empty
    window = SettleWindow.of(60.0, 10.0)
    now = datetime(2024, 5, 2, tzinfo=UTC)
    asked = chosen.audit_filters(window, now=now)
    assert asked["since"] == now - timedelta(hours=24) and asked["stuck"] == window
    with pytest.raises(InvalidRequest) as raised:
        ListFilter.from_query({"state": "nope", "merchant": "1e3", "until": "soon"})
    assert [name for name, _ in raised.value.fields] == ["state", "merchant", "until"]


def test_times_are_iso_in_utc_unless_they_say_otherwise_or_ages() -> None:
    assert parse_time("2024-05-01T12:00", "since") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_time("2024-05-01T12:00:00+02:00", "since").utcoffset() == timedelta(hours=2)
    now = datetime(2024, 5, 2, tzinfo=UTC)
    assert parse_time("2w", "since", now=now) == now - timedelta(days=14)


def test_the_plot_escapes_error_types_and_stacks_them_per_bucket() -> None:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    hostile = "<script>alert(1)</script>"
    chart = failure_chart(
        [
            FailureCount(start, "card_declined", 3),
            FailureCount(start, hostile, 1),
            FailureCount(start + timedelta(hours=2), "card_declined", 2),
        ],
        since=start,
        until=start + timedelta(hours=3),
        bucket_seconds=3600,
    )
    assert "<script>" not in chart.svg and "&lt;script&gt;" in chart.svg
    assert chart.svg.count("<rect") == 3 and chart.total == 6
    assert [(name, total) for name, _, total in chart.legend] == [
        ("card_declined", 5),
        (hostile, 1),
    ]
    empty = failure_chart([], since=start, until=start + timedelta(hours=1), bucket_seconds=3600)
    assert "no failures in this window" in empty.svg


def test_the_plot_folds_rare_types_into_other() -> None:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    counts = [FailureCount(start, f"type_{i}", 10 - i) for i in range(10)]
    chart = failure_chart(counts, since=start, until=start, bucket_seconds=3600)
    assert len(chart.legend) == 8 and chart.legend[-1][0] == "other types"
    assert chart.legend[-1][2] == sum(10 - i for i in range(7, 10))
