"""The migrated database, the declaration in `orchestrator.states` and the machine are one graph.

The migrations hold frozen copies of the graph (the guard table `checkout_state_transitions` and
the CHECK `ck_checkouts_state`); they never import the declaration, so this test is what keeps
them in step with it.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import states
from orchestrator.engine import machine


async def test_migrated_guard_table_and_state_check_match_the_declaration(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT from_state, to_state, trigger FROM checkout_state_transitions")
            )
        ).all()
        check = (
            await conn.execute(
                text(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conname = 'ck_checkouts_state' AND conrelid = 'checkouts'::regclass"
                )
            )
        ).scalar_one()
    moves = sorted((r[0], r[1], r[2]) for r in rows)
    assert moves == states.legal_moves()
    assert machine.legal_transitions() == states.legal_moves()
    assert sorted(re.findall(r"'([^']*)'::text", check)) == sorted(states.STATES)
