"""The database's guard table and the machine describe the same graph."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import machine


async def test_database_guard_table_matches_the_machine(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT from_state, to_state, trigger FROM checkout_state_transitions")
            )
        ).all()
    assert sorted((r[0], r[1], r[2]) for r in rows) == machine.legal_transitions()
