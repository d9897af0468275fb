"""The webhook receiver: an ASGI application a host mounts (Starlette, FastAPI, Django's ASGI) or
`orchestrator webhooks serve` runs alone.

For each POST it checks `X-Violet-Hmac` against the raw body (401 and nothing stored when it
does not match), reads at most `max_body_bytes` (413), and stores the event with an INSERT
keyed by `X-Violet-Event-Id` (deliveries arriving together share one statement: one commit,
store/inbox.py `InboxWriter`); it answers 200 only once its row is committed, so an
acknowledged event is never lost, and a redelivery is acknowledged again without changing
anything. While answering it never calls Violet and never touches a checkout (no lease, no
lock but the inbox row's own): Violet wants an answer within ~10 s, and the checkout path may
hold a lease for longer. Database trouble is answered 503: Violet redelivers later. A signed
body the database can never hold is not database trouble: its unstorable values are replaced
(webhooks/storable.py) or, failing that, the event is stored `ignored` with the reason; both
are answered 200, logged and counted, so Violet stops redelivering and nothing is lost unseen.

The database pool opens on the first request, or at ASGI lifespan start-up when the server
sends it (a mounted sub-application does not receive lifespan events); `close()` ends it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

import psycopg
import psycopg_pool

from orchestrator import observe
from orchestrator.engine.crashpoints import CrashPoints
from orchestrator.errors import SchemaNotMigrated
from orchestrator.store import database, inbox
from orchestrator.store.schema import VERSION_TABLE
from orchestrator.webhooks import events, storable
from orchestrator.webhooks.signature import HEADER as SIGNATURE_HEADER
from orchestrator.webhooks.signature import Verifier

if TYPE_CHECKING:
    from orchestrator.config import Settings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The crash point between the committed INSERT and the answer (tests kill the receiver there).
CRASH_AFTER_INSERT: Final = "webhook_after_insert"
# Violet gives up on an answer after ~10 s: every wait of ours is bounded well below that.
_POOL_WAIT_SECONDS: Final = 3.0
_STATEMENT_TIMEOUT_SECONDS: Final = 3.0
_LOCK_TIMEOUT_SECONDS: Final = 2.0
_JSON: Final = [(b"content-type", b"application/json")]


class WebhookReceiver:
    """The ASGI application. Build it with `from_settings`, or directly for a host's own pool."""

    def __init__(
        self,
        *,
        secrets: Iterable[Any],
        database_url: str | None = None,
        pool: psycopg_pool.AsyncConnectionPool | None = None,
        max_body_bytes: int = 1024 * 1024,
        pool_size: int = 10,
        write_slots: int = 2,
        crash: CrashPoints | None = None,
    ) -> None:
        if (database_url is None) == (pool is None):
            raise ValueError("give either database_url or pool")
        self._verifier = Verifier(secrets)
        self._url = database_url
        self._pool = pool
        self._owns_pool = pool is None
        self._pool_size = pool_size
        self._write_slots = write_slots
        self._writer: inbox.InboxWriter | None = None
        self._opening = asyncio.Lock()
        self.max_body_bytes = max_body_bytes
        self._crash = crash if crash is not None else CrashPoints()
        #: Answers given, by kind: what the benchmark and an operator's metrics read.
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "stored",
                "duplicate",
                "unsigned",
                "too_large",
                "bad_request",
                "unavailable",
                "sanitized",
                "refused",
            ),
            0,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, pool: psycopg_pool.AsyncConnectionPool | None = None
    ) -> WebhookReceiver:
        """A receiver for `settings`: its webhook secrets (or the app secret), its body cap, its
        database (unless the host gives its own pool)."""
        secrets = settings.violet_webhook_secrets or (
            (settings.violet_app_secret,) if settings.violet_app_secret is not None else ()
        )
        url = None if pool is not None else database.resolve_database_url(settings)
        return cls(
            secrets=secrets,
            database_url=url,
            pool=pool,
            max_body_bytes=settings.webhook_max_body_bytes,
            pool_size=settings.db_pool_size,
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the pool (if this receiver owns it) and check the schema is at this code's head."""
        async with self._opening:
            if self._pool is None:
                assert self._url is not None
                pool = psycopg_pool.AsyncConnectionPool(
                    database.libpq_conninfo(self._url),
                    min_size=1,
                    max_size=self._pool_size,
                    timeout=_POOL_WAIT_SECONDS,
                    open=False,
                    kwargs={
                        "autocommit": True,
                        "application_name": "orchestrator-webhooks",
                        "connect_timeout": 5,
                        **database.session_options(
                            self._url,
                            lock_timeout=_LOCK_TIMEOUT_SECONDS,
                            statement_timeout=_STATEMENT_TIMEOUT_SECONDS,
                        ),
                    },
                )
                await pool.open(wait=True, timeout=30)
                try:
                    await _check_schema(pool)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool

    async def close(self) -> None:
        """Close the pool if this receiver opened it."""
        if self._writer is not None:
            await self._writer.drain()
            self._writer = None
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def __aenter__(self) -> WebhookReceiver:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await _answer(send, 405, {"error": "POST only"}, [(b"allow", b"POST")])
            return
        headers = _headers(scope)
        status, payload = await self._handle(headers, receive)
        if status == 200:
            self._crash.hit(CRASH_AFTER_INSERT)
        await _answer(send, status, payload)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.open()
                except Exception as exc:  # the server prints the reason and does not start
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, headers: dict[str, str], receive: Receive) -> tuple[int, Any]:
        """(status, JSON answer) for one POST; the event is stored before a 200 is returned."""
        body = await _read_body(headers, receive, self.max_body_bytes)
        if body is None:
            self._count("too_large")
            return 413, {"error": f"body larger than {self.max_body_bytes} bytes"}
        if not self._verifier.verify(body, headers.get(SIGNATURE_HEADER)):
            self._count("unsigned")
            log.warning("webhook refused: missing or wrong X-Violet-Hmac")
            return 401, {"error": "bad signature"}
        try:
            event = events.parse(headers, json.loads(body))
        except (ValueError, RecursionError) as exc:
            self._count("bad_request")
            reason = str(exc) if isinstance(exc, events.BadEvent) else "body is not JSON"
            log.warning("signed webhook refused, nothing stored: %s", reason)
            return 400, {"error": reason}
        try:
            event, stored = await self._keep(event, body)
        except (psycopg.Error, psycopg_pool.PoolTimeout, OSError, SchemaNotMigrated) as exc:
            self._count("unavailable")
            log.warning("webhook %s not stored: %s", event.event_id, database.error_reason(exc))
            return 503, {"error": "not stored; deliver again later"}
        self._count("stored" if stored else "duplicate")
        answer = {"event_id": event.event_id, "stored": stored}
        if event.reason is not None:
            log.warning("webhook %s stored ignored: %s", event.event_id, event.reason)
            answer["ignored"] = event.reason
        return 200, answer

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        observe.webhook_answer(outcome)

    async def _keep(self, event: inbox.InboxEvent, raw: bytes) -> tuple[inbox.InboxEvent, bool]:
        """Store the event in a form the database holds; returns it as stored and whether this
        call stored it. Raises what means the database is failing us (answered 503)."""
        try:
            kept = storable.sanitized(event, raw)
        except RecursionError:
            return await self._refuse(event, raw, "nested too deep to check")
        if kept is not event:
            self._count("sanitized")
            log.warning("webhook %s: unstorable values replaced to store it", event.event_id)
        try:
            return kept, await self._store(kept)
        except psycopg.Error as exc:
            if not storable.refused_by_database(exc):
                raise
            why = storable.database_reason(exc)
        return await self._refuse(event, raw, why)

    async def _refuse(
        self, event: inbox.InboxEvent, raw: bytes, why: str
    ) -> tuple[inbox.InboxEvent, bool]:
        """Store the record of an event whose body cannot be stored (`ignored`, with why)."""
        kept = storable.refusal(event, raw, why)
        self._count("refused")
        return kept, await self._store(kept)

    async def _store(self, event: inbox.InboxEvent) -> bool:
        if self._pool is None:
            await self.open()
        assert self._pool is not None
        if self._writer is None:
            self._writer = inbox.InboxWriter(self._pool, slots=self._write_slots)
        return await self._writer.insert(event)


async def _check_schema(pool: psycopg_pool.AsyncConnectionPool) -> None:
    """Refuse to serve against a database whose schema is not at this code's head revision."""
    async with pool.connection() as conn:
        try:
            cursor = await conn.execute(f"SELECT version_num FROM {VERSION_TABLE}")
        except psycopg.errors.UndefinedTable:
            raise SchemaNotMigrated(
                "database has no orchestrator schema; run `orchestrator db upgrade`"
            ) from None
        found = [row[0] for row in await cursor.fetchall()]
    head = database.head_revision()
    if found != [head]:
        raise SchemaNotMigrated(
            f"database schema is at revision {', '.join(found) or 'none'}, the webhook receiver "
            f"needs {head}; run `orchestrator db upgrade`"
        )


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (ASGI servers send them lower-cased already)."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", ())
    }


async def _read_body(headers: dict[str, str], receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to be longer than `limit`."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _answer(
    send: Send, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload).encode()
    headers = [*_JSON, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
