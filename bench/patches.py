"""Hot-path fixes applied by monkeypatching inside the bench process only.

A patch measures what a fix would buy without editing `orchestrator/`, so a proposed fix comes
with a number. Each one is a context manager (or a per-instance change) so patched and unpatched
contenders can be interleaved in one run. The three below are in the library already
(`90d7bae`: autocommit and shallow serialisation; `a6c1cc2`, `d52cd13`: smaller HTTP pools), so
against it each one changes nothing; they stay as the pattern for the next proposed fix.

- ``shallow_asdict``: serialising event and step records with `dataclasses.asdict` deep-copies
  the nested request/response summaries before `json.dumps` reads them once. A shallow field
  read produces identical JSON.
- ``sharded_http``: httpcore's pool scans every connection on each request and each response
  close (`AsyncConnectionPool._assign_requests_to_connections` -> `has_expired` ->
  `is_socket_readable`, a poll and a getpeername syscall per idle connection), so one
  `httpx.AsyncClient` with 100 connections costs O(connections) syscalls per Violet call. The
  patch spreads `VioletClient`'s requests round-robin over K clients of 100/K connections each.
- ``autocommit``: every `Repository` method is one statement (a data-modifying CTE is atomic on
  its own), so wrapping it in BEGIN ... COMMIT costs three round trips instead of one. An
  AUTOCOMMIT engine (same pool) sends just the statement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import httpx

from orchestrator.api import Orchestrator
from orchestrator.store import repository
from orchestrator.violet import VioletClient


def _shallow_asdict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


@contextlib.contextmanager
def shallow_asdict() -> Iterator[None]:
    original = repository.__dict__.get("asdict")
    if original is None:  # the library no longer uses asdict there: nothing to patch
        yield
        return
    setattr(repository, "asdict", _shallow_asdict)  # noqa: B010 - the module does not export it
    try:
        yield
    finally:
        setattr(repository, "asdict", original)  # noqa: B010


class _BroadcastHeaders:
    """`VioletClient._set_token` writes the token header; every shard must get it."""

    def __init__(self, clients: list[httpx.AsyncClient]) -> None:
        self._clients = clients

    def __setitem__(self, key: str, value: str) -> None:
        for client in self._clients:
            client.headers[key] = value

    def __getitem__(self, key: str) -> str:
        return self._clients[0].headers[key]

    def get(self, key: str, default: str | None = None) -> str | None:
        value: str | None = self._clients[0].headers.get(key, default)
        return value


class _ShardedHTTP:
    """Quacks like the `httpx.AsyncClient` inside `VioletClient` (request, headers, aclose)."""

    def __init__(self, original: httpx.AsyncClient, shards: int, connections: int) -> None:
        per = max(1, connections // shards)
        self._clients = [
            httpx.AsyncClient(
                base_url=original.base_url,
                timeout=original.timeout,
                headers=original.headers,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=per, max_keepalive_connections=per),
            )
            for _ in range(shards)
        ]
        self._next = itertools.cycle(self._clients)
        self.headers = _BroadcastHeaders(self._clients)

    async def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
        return await next(self._next).request(*args, **kwargs)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


def sharded_http(shards: int = 8, connections: int = 100) -> None:
    """From now on every new VioletClient (without a custom transport) uses K shards."""
    original_init = VioletClient.__init__

    def init(self: VioletClient, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        original = getattr(self, "_http", None)  # absent: the client shards by itself now
        if kwargs.get("transport") is None and original is not None:
            setattr(self, "_http", _ShardedHTTP(original, shards, connections))  # noqa: B010

    VioletClient.__init__ = init  # type: ignore[method-assign]


def autocommit(orch: Orchestrator) -> None:
    """Make this orchestrator's repository send single statements without BEGIN/COMMIT."""
    if hasattr(orch.repo, "_auto"):  # the library already autocommits
        return
    orch.repo.engine = orch.engine.execution_options(isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    yield


PATCHES = {"shallow_asdict": shallow_asdict}


@contextlib.contextmanager
def applied(names: list[str]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for name in names:
            if name in PATCHES:
                stack.enter_context(PATCHES[name]())
        yield


_KEEP = contextlib.ExitStack()


def apply(name: str) -> None:
    """Apply a global patch for the rest of the process (profiling)."""
    if name in PATCHES:
        _KEEP.enter_context(PATCHES[name]())
