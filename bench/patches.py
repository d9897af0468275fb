"""Proposed hot-path fixes, applied by monkeypatching inside the bench process only.

The bench may not edit `orchestrator/`; these patches measure what a fix would buy, so the
integrator gets a number with each recommendation. Each one is a context manager (or a per-
instance change) so patched and unpatched contenders can be interleaved in one run.

- ``shallow_asdict``: `store/repository.py` serialises every event and step record with
  `dataclasses.asdict`, which deep-copies the nested request/response summaries before
  `json.dumps` reads them once. A shallow field read produces identical JSON.
- ``autocommit``: every `Repository` method is one statement (a data-modifying CTE is atomic on
  its own), yet `engine.begin()` wraps it in BEGIN ... COMMIT: three round trips instead of one.
  An AUTOCOMMIT engine (same pool) sends just the statement.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from orchestrator.api import Orchestrator
from orchestrator.store import repository


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
