"""The step writes stay within what psycopg caches the parse of (4 kB, 50 parameters).

Past either bound psycopg parses the statement's placeholders again on every execution: about
150 us of client CPU per step write on the bench machine (bench/writes.py), for nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import _queries

from orchestrator.store import checkout_params, checkout_sql, repository
from orchestrator.store.records import CheckoutRow, Event


class _NoEngine:
    """What the repository asks of an engine when it is built; nothing here reaches a database."""

    def execution_options(self, **_: Any) -> _NoEngine:
        return self


@pytest.mark.parametrize("name", ["WRITE_SQL", "WRITE_MANY_SQL", "INSERT_SQL"])
def test_each_step_write_statement_is_short_enough_to_be_cached(name: str) -> None:
    statement = getattr(checkout_sql, name).encode()
    assert len(statement) <= _queries.MAX_CACHED_STATEMENT_LENGTH, name


async def test_a_single_write_sends_few_enough_parameters_to_be_cached() -> None:
    sent: list[dict[str, Any]] = []

    async def capture(write: dict[str, Any]) -> dict[str, Any]:
        sent.append(checkout_params.write_params(write))
        raise RuntimeError("captured")  # the write goes no further

    repo = repository.Repository(_NoEngine())  # type: ignore[arg-type]
    repo._write_one = capture  # type: ignore[method-assign]
    row = CheckoutRow.registered(
        app_order_id="size-1",
        request={},
        payment_kind="token",
        currency="USD",
        first_step="create_cart",
        run=True,
    )
    row.state = "failed"
    with pytest.raises(RuntimeError, match="captured"):
        await repo.write(row, [Event("created")], worker="w", lease_seconds=5, keep_lease=False)
    (params,) = sent
    assert params["change"] is not None  # a finished checkout's write carries its change
    assert len(params) <= _queries.MAX_CACHED_STATEMENT_PARAMS
