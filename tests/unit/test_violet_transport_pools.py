"""The client's connection pools: a few small ones, sharing one TLS context.

Building a TLS context loads the CA bundle (~18 ms); a client of 100 connections has 13 pools,
so one context each cost every process a quarter of a second at start.
"""

from __future__ import annotations

import ssl

import httpx

from orchestrator.violet.transport import _pools


def _tls_context(transport: httpx.AsyncBaseTransport) -> ssl.SSLContext:
    assert isinstance(transport, httpx.AsyncHTTPTransport)
    context = transport._pool._ssl_context  # httpcore's pool keeps the context it connects with
    assert isinstance(context, ssl.SSLContext)
    return context


def test_the_pools_share_one_verifying_tls_context() -> None:
    pools = _pools(None, max_connections=100, http_shards=None)
    assert len(pools) == 13  # at most 8 connections a pool
    contexts = {id(_tls_context(pool)) for pool in pools}
    assert len(contexts) == 1
    context = _tls_context(pools[0])
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_a_host_transport_is_used_as_given() -> None:
    given = httpx.MockTransport(lambda request: httpx.Response(200))
    assert _pools(given, max_connections=100, http_shards=None) == [given]
