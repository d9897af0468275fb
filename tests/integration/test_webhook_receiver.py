"""The webhook receiver over HTTP: what it stores, what it refuses, and when it says 200.

Most cases talk to the ASGI application in this process (httpx's ASGI transport); one serves it
with uvicorn in its own process and talks to it over a real socket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest

from orchestrator.webhooks.receive import WebhookReceiver
from tests.fixtures.db import dump_rows, libpq_url
from tests.fixtures.webhooks import (
    OLD_SECRET,
    SECRET,
    delivery,
    inbox_rows,
    order_body,
    receiver_env,
    served_receiver,
)

MAX_BODY = 4096


@pytest.fixture
async def receiver(database_url: str) -> AsyncIterator[WebhookReceiver]:
    app = WebhookReceiver(
        secrets=[SECRET, OLD_SECRET], database_url=database_url, max_body_bytes=MAX_BODY
    )
    try:
        yield app
    finally:
        await app.close()


@pytest.fixture
async def client(receiver: WebhookReceiver) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=receiver)
    async with httpx.AsyncClient(transport=transport, base_url="http://hooks") as http:
        yield http


async def post(client: httpx.AsyncClient, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/violet/webhooks", content=raw, headers=headers)


def count_rows(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        found = conn.execute("SELECT count(*) FROM webhook_inbox").fetchone()
    assert found is not None
    return int(found[0])


async def test_a_signed_event_is_stored_then_acknowledged(
    client: httpx.AsyncClient, database_url: str
) -> None:
    raw, headers = delivery(order_body(555), bag_id=5550)
    response = await post(client, raw, headers)
    event_id = headers["x-violet-event-id"]
    assert response.status_code == 200
    assert response.json() == {"event_id": event_id, "stored": True}
    assert inbox_rows(database_url, event_id) == [
        ("ORDER_UPDATED", order_body(555), "pending", 555, 5550, None)
    ]


async def test_an_event_signed_with_the_previous_secret_is_accepted_during_a_rotation(
    client: httpx.AsyncClient, database_url: str
) -> None:
    raw, headers = delivery(secret=OLD_SECRET)
    assert (await post(client, raw, headers)).status_code == 200
    assert len(inbox_rows(database_url, headers["x-violet-event-id"])) == 1


@pytest.mark.parametrize("secret", [None, "whsec-someone-else", "wrong-signature"])
async def test_a_bad_or_missing_signature_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, database_url: str, secret: str | None
) -> None:
    raw, headers = delivery(secret=None if secret == "wrong-signature" else secret)
    if secret == "wrong-signature":
        headers["x-violet-hmac"] = "bm90IHRoZSByaWdodCBzaWduYXR1cmUgYXQgYWxsIQ=="
    response = await post(client, raw, headers)
    assert response.status_code == 401
    assert count_rows(database_url) == 0


async def test_a_signature_over_another_body_is_refused(
    client: httpx.AsyncClient, database_url: str
) -> None:
    raw, headers = delivery(order_body(1))
    response = await post(client, raw.replace(b"1", b"2", 1), headers)
    assert response.status_code == 401
    assert count_rows(database_url) == 0


async def test_a_redelivery_is_acknowledged_and_stored_once(
    client: httpx.AsyncClient, database_url: str
) -> None:
    raw, headers = delivery(order_body(77, "COMPLETED"))
    answers = [await post(client, raw, headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["stored"] for a in answers] == [True, False, False]
    # Concurrent redeliveries of one event: still one row.
    raw2, headers2 = delivery(order_body(78))
    answers = await asyncio.gather(*(post(client, raw2, headers2) for _ in range(8)))
    assert {a.status_code for a in answers} == {200}
    assert sum(a.json()["stored"] for a in answers) == 1
    assert count_rows(database_url) == 2


async def test_a_body_over_the_cap_is_refused_unread_and_not_stored(
    client: httpx.AsyncClient, database_url: str
) -> None:
    raw, headers = delivery(order_body(padding="x" * MAX_BODY))
    assert (await post(client, raw, headers)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap holds while reading
        for start in range(0, len(raw), 1000):
            yield raw[start : start + 1000]

    response = await client.post("/", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert count_rows(database_url) == 0


@pytest.mark.parametrize("topic", ["ORDER_CANCELED", "ORDER_CANCELLED"])
async def test_both_cancel_spellings_are_stored_as_one_event_type(
    client: httpx.AsyncClient, database_url: str, topic: str
) -> None:
    raw, headers = delivery(order_body(90, "CANCELED"), topic=topic)
    assert (await post(client, raw, headers)).status_code == 200
    [row] = inbox_rows(database_url, headers["x-violet-event-id"])
    assert row[0] == "ORDER_CANCELED"


async def test_events_for_unknown_orders_and_merchant_events_are_kept_for_the_applier(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """The receiver knows no checkouts: what is ours is decided when the event is applied."""
    stranger, headers = delivery(order_body(424242))
    merchant, merchant_headers = delivery({"id": 31, "name": "Shop"}, topic="MERCHANT_DISABLED")
    enabled, enabled_headers = delivery({"id": 31, "name": "Shop"}, topic="MERCHANT_ENABLED")
    for raw, hdrs in (
        (stranger, headers),
        (merchant, merchant_headers),
        (enabled, enabled_headers),
    ):
        assert (await post(client, raw, hdrs)).status_code == 200
    assert inbox_rows(database_url, headers["x-violet-event-id"])[0][2:4] == ("pending", 424242)
    [row] = inbox_rows(database_url, merchant_headers["x-violet-event-id"])
    assert (row[0], row[2], row[5]) == ("MERCHANT_DISABLED", "pending", 31)
    assert inbox_rows(database_url, enabled_headers["x-violet-event-id"])[0][0] == (
        "MERCHANT_ENABLED"
    )


@pytest.mark.parametrize(
    ("raw", "headers_change", "status"),
    [
        (b"not json", {}, 400),
        (b'{"id": 1}', {"x-violet-event-id": ""}, 400),
        (b'{"id": 1}', {"x-violet-topic": ""}, 400),
        (b"[" * 2000 + b"]" * 2000, {}, 400),  # deeper than the JSON parser goes
    ],
)
async def test_a_signed_request_that_is_no_event_is_refused(
    client: httpx.AsyncClient,
    database_url: str,
    raw: bytes,
    headers_change: dict[str, str],
    status: int,
) -> None:
    _, headers = delivery()
    headers.update(headers_change)
    headers = {k: v for k, v in headers.items() if v}
    from orchestrator.webhooks.signature import sign

    headers["x-violet-hmac"] = sign(raw, SECRET)
    assert (await post(client, raw, headers)).status_code == status
    assert count_rows(database_url) == 0


async def test_only_post_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_secrets_in_a_delivery_are_never_stored(
    client: httpx.AsyncClient, database_url: str
) -> None:
    client_secret = "pi_3Nf0_secret_Zq9xW2vB"
    body = order_body(
        91,
        payment_intent_client_secret=client_secret,
        note="card 4242 4242 4242 4242 cvc",
        customer={"card_cvc": "737", "password": "hunter2-hunter2"},
    )
    raw, headers = delivery(body)
    assert (await post(client, raw, headers)).status_code == 200
    dump = dump_rows(database_url)
    assert headers["x-violet-event-id"] in dump  # the search does read the inbox
    for value in (
        client_secret,
        "4242 4242 4242 4242",
        '"737"',
        "hunter2-hunter2",
        SECRET,
        OLD_SECRET,
        headers["x-violet-hmac"],
    ):
        assert value not in dump


async def test_no_acknowledgement_before_the_event_is_committed(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """While the inbox cannot be written (here: locked by another session), the answer is 503,
    never 200; Violet redelivers and the event is stored then."""
    raw, headers = delivery()
    assert (await post(client, delivery()[0], delivery()[1])).status_code == 200  # pool open
    with psycopg.connect(libpq_url(database_url)) as locker:
        locker.execute("LOCK TABLE webhook_inbox IN ACCESS EXCLUSIVE MODE")
        response = await post(client, raw, headers)
        assert response.status_code == 503
        locker.rollback()
    assert inbox_rows(database_url, headers["x-violet-event-id"]) == []
    assert (await post(client, raw, headers)).json()["stored"] is True


async def test_a_host_mounts_the_receiver_in_its_own_starlette_app(
    receiver: WebhookReceiver, database_url: str
) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route

    host = Starlette(routes=[Route("/violet/webhooks", receiver)])
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as http:
        raw, headers = delivery()
        response = await http.post("/violet/webhooks", content=raw, headers=headers)
    assert response.status_code == 200
    assert len(inbox_rows(database_url, headers["x-violet-event-id"])) == 1


@pytest.fixture
def served(database_url: str) -> Iterator[str]:
    with served_receiver(receiver_env(database_url)) as receiver_process:
        yield receiver_process.url


def test_over_a_real_socket_the_served_receiver_stores_and_refuses(
    served: str, database_url: str
) -> None:
    raw, headers = delivery(order_body(12), topic="ORDER_CANCELLED")
    with httpx.Client(timeout=10) as http:
        assert http.post(served, content=raw, headers=headers).json()["stored"] is True
        assert http.post(served, content=raw, headers=headers).json()["stored"] is False
        assert (
            http.post(served, content=raw, headers={**headers, "x-violet-hmac": ""}).status_code
            == 401
        )
        too_big, big_headers = delivery(order_body(padding="y" * 2_000_000))
        assert http.post(served, content=too_big, headers=big_headers).status_code == 413
    assert [row[0] for row in inbox_rows(database_url, headers["x-violet-event-id"])] == [
        "ORDER_CANCELED"
    ]
    assert json.loads(json.dumps(count_rows(database_url))) == 1


@pytest.mark.parametrize(
    ("raw", "stored_value"),
    [
        (b'{"id": 5, "bags": [], "customer": {"first_name": "A\\u0000B"}}', "A\ufffdB"),
        (b'{"id": 5, "bags": [], "customer": {"first_name": "A\\ud800B"}}', "A\ufffdB"),
        (b'{"id": 5, "bags": [], "customer": {"first_name": NaN}}', None),
        (b'{"id": 5, "bags": [], "customer": {"first_name": 1e999}}', None),
    ],
    ids=["nul-in-string", "lone-surrogate", "nan", "beyond-a-double"],
)
async def test_a_signed_body_postgres_cannot_store_is_stored_sanitized_not_answered_503(
    client: httpx.AsyncClient,
    receiver: WebhookReceiver,
    database_url: str,
    raw: bytes,
    stored_value: str | None,
) -> None:
    """503 tells Violet "deliver again later"; a body jsonb cannot hold would get 503 at each
    of Violet's 10 attempts and be lost (and a webhook failing often is paused, losing every
    other event with it). Its unstorable values are replaced instead, with the hash of the body
    as signed kept beside them: stored, acknowledged, a redelivery deduplicated."""
    import hashlib

    from orchestrator.webhooks.storable import NOTE_KEY

    _, headers = delivery()
    from orchestrator.webhooks.signature import sign

    headers["x-violet-hmac"] = sign(raw, SECRET)
    answers = [(await post(client, raw, headers)) for _ in range(2)]

    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["stored"] for a in answers] == [True, False]
    [(_, body, state, order_id, _, _)] = inbox_rows(database_url, headers["x-violet-event-id"])
    assert (state, order_id) == ("pending", 5)
    assert body["customer"]["first_name"] == stored_value
    assert body[NOTE_KEY] == {"sha256": hashlib.sha256(raw).hexdigest(), "replaced": 1}
    assert receiver.counts["sanitized"] == 2 and receiver.counts["unavailable"] == 0


async def test_a_body_the_database_refuses_anyway_is_recorded_ignored_and_acknowledged(
    client: httpx.AsyncClient,
    receiver: WebhookReceiver,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Should the database refuse a body for a reason nothing foresaw (here: the sanitizing is
    switched off), the event is still kept and visible: stored `ignored` with the database's
    reason and the body's hash instead of the body, answered 200 so Violet stops retrying."""
    import hashlib

    from orchestrator.webhooks import storable

    monkeypatch.setattr(storable, "sanitized", lambda event, raw: event)
    raw = b'{"id": 5, "bags": [], "x": NaN}'
    _, headers = delivery()
    from orchestrator.webhooks.signature import sign

    headers["x-violet-hmac"] = sign(raw, SECRET)
    answer = await post(client, raw, headers)

    assert answer.status_code == 200
    assert "database refuses" in answer.json()["ignored"]
    [(_, body, state, order_id, _, _)] = inbox_rows(database_url, headers["x-violet-event-id"])
    assert (state, order_id) == ("ignored", 5)
    assert body[storable.NOTE_KEY]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert receiver.counts["refused"] == 1 and receiver.counts["unavailable"] == 0
    assert (await post(client, raw, headers)).json()["stored"] is False  # a redelivery


async def test_an_order_header_contradicting_the_signed_body_is_recorded_ignored(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """The headers are not signed: a body of order 555 under `X-Violet-Order-Id: 556` is kept
    for audit, `ignored` with why, its order the body's, and answered 200 (no retry)."""
    raw, headers = delivery(order_body(555))
    headers["x-violet-order-id"] = "556"
    answer = await post(client, raw, headers)

    assert answer.status_code == 200
    assert "X-Violet-Order-Id" in answer.json()["ignored"]
    [(_, _, state, order_id, _, _)] = inbox_rows(database_url, headers["x-violet-event-id"])
    assert (state, order_id) == ("ignored", 555)
