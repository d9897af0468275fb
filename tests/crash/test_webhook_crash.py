"""A receiver killed (SIGKILL) after the inbox INSERT committed and before it answered.

Violet saw no answer, so it delivers the event again, possibly to another receiver process: the
redelivery is acknowledged and the event is in the inbox once.
"""

from __future__ import annotations

import signal

import httpx
import pytest

from orchestrator.webhooks.receive import CRASH_AFTER_INSERT
from tests.fixtures.webhooks import (
    delivery,
    inbox_rows,
    order_body,
    receiver_env,
    served_receiver,
)


def test_a_receiver_killed_before_answering_loses_nothing_and_stores_nothing_twice(
    database_url: str,
) -> None:
    raw, headers = delivery(order_body(4711, "COMPLETED"), topic="ORDER_COMPLETED", bag_id=47110)
    event_id = headers["x-violet-event-id"]
    crashing = receiver_env(
        database_url, ORCHESTRATOR_TEST_MODE="1", ORCHESTRATOR_CRASH_AT=CRASH_AFTER_INSERT
    )
    with served_receiver(crashing) as doomed:
        with pytest.raises(httpx.TransportError):  # the connection dies with the process
            httpx.post(doomed.url, content=raw, headers=headers, timeout=10)
        assert doomed.process.wait(10) == -signal.SIGKILL
    assert len(inbox_rows(database_url, event_id)) == 1  # committed before the kill

    with served_receiver(receiver_env(database_url)) as survivor:
        answer = httpx.post(survivor.url, content=raw, headers=headers, timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {"event_id": event_id, "stored": False}
    assert inbox_rows(database_url, event_id) == [
        ("ORDER_COMPLETED", order_body(4711, "COMPLETED"), "pending", 4711, 47110, None)
    ]
