"""The "request has left" signal that lets a write run behind a Violet call (violet/sent.py)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from orchestrator.violet.sent import request_leaving, request_sent_hook, when_request_sent


async def test_fires_once_the_request_body_is_sent_not_at_an_earlier_trace_event() -> None:
    fired: list[int] = []
    with when_request_sent(lambda: fired.append(1)):
        hook = request_sent_hook()
        assert hook is not None
        for event in (
            "connection.connect_tcp.complete",
            "http11.send_request_headers.started",
            "http11.send_request_headers.complete",
            "http11.send_request_body.started",
        ):
            await hook(event, {})
        assert fired == []
        await hook("http11.send_request_body.complete", {})
        assert fired == [1]
        await hook("http11.send_request_body.complete", {})  # a second request of the step
        assert request_sent_hook() is None  # nothing left to signal: no hook on later requests
    assert fired == [1]


@pytest.mark.parametrize("raises", [False, True])
def test_fires_when_the_block_ends_if_no_request_got_that_far(raises: bool) -> None:
    fired: list[int] = []
    expected = pytest.raises(RuntimeError) if raises else contextlib.nullcontext()
    with expected, when_request_sent(lambda: fired.append(1)):
        assert fired == []
        if raises:
            raise RuntimeError("refused before sending")
    assert fired == [1]


def test_handing_over_to_an_untraced_transport_fires_at_once() -> None:
    fired: list[int] = []
    request_leaving()  # nobody waiting: nothing happens
    with when_request_sent(lambda: fired.append(1)):
        request_leaving()
        assert fired == [1]
    assert fired == [1]


def test_nobody_waiting_means_no_trace_hook() -> None:
    assert request_sent_hook() is None


async def test_concurrent_checkouts_never_see_each_others_signal() -> None:
    fired: list[str] = []

    async def one(name: str, send: bool) -> None:
        with when_request_sent(lambda: fired.append(name)):
            await asyncio.sleep(0)
            if send:
                request_leaving()
            await asyncio.sleep(0.01)

    await asyncio.gather(one("sent", True), one("idle", False))
    assert fired == ["sent", "idle"]  # "idle" only when its own block ended
