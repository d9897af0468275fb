"""The CLI's coroutines run on uvloop (the bench's CPU figures for `recover` assume it)."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest

from orchestrator import SyncOrchestrator, aio
from orchestrator.config import Settings


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop does not run on Windows")
def test_cli_runs_on_uvloop() -> None:
    assert aio.run(_loop_module()).startswith("uvloop")


def test_run_returns_the_coroutine_result_and_closes_its_loop() -> None:
    async def answer() -> int:
        return 42

    assert aio.run(answer()) == 42
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop does not run on Windows")
def test_the_sync_facade_runs_its_private_loop_on_uvloop() -> None:
    orch = SyncOrchestrator(Settings(database_url="postgresql://nowhere.invalid/none"))
    try:
        assert orch._call(_loop_module()).startswith("uvloop")
    finally:
        orch.close()  # never opened: closing touches no database


def test_the_cli_raises_the_gc_thresholds_of_its_own_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrator.cli import app as cli

    seen: list[tuple[int, ...]] = []
    monkeypatch.setattr(cli, "app", lambda: seen.append(gc.get_threshold()))
    before = gc.get_threshold()
    try:
        cli.main()
    finally:
        gc.set_threshold(*before)
    assert seen == [aio.GC_THRESHOLD]
    assert before != aio.GC_THRESHOLD  # importing the library alone leaves a host's GC alone
