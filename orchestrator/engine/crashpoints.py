"""Named crash points: exact places where tests and the demo make a worker die (SIGKILL).

Every gap between a commit and a Violet call has a name, e.g. ``after_intent_commit:submit``,
``after_call:submit`` (Violet answered, outcome not yet committed) and
``after_outcome_commit:submit``. Where a write runs behind the next overwrite call
(write_behind.py), ``after_intent_commit:<next step>`` is reached before that write has even started
(it waits for the call's request to be sent) and ``after_outcome_commit:<step>`` once it is
known committed. A process dies at one only when
``ORCHESTRATOR_TEST_MODE=1`` and ``ORCHESTRATOR_CRASH_AT`` names it (comma-separated;
``point@N`` dies at the N-th hit).
Otherwise `hit` is a cheap no-op: it runs on every step.
"""

from __future__ import annotations

import logging
import os
import signal
from collections import Counter

POINTS = ("after_intent_commit", "after_call", "after_outcome_commit")


class CrashPoints:
    """Decides, from the environment read once, whether to die at a named point."""

    def __init__(self, spec: str | None = None, *, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = os.environ.get("ORCHESTRATOR_TEST_MODE") == "1"
        if spec is None:
            spec = os.environ.get("ORCHESTRATOR_CRASH_AT", "")
        self._targets: dict[str, int] = {}
        if enabled:
            for item in filter(None, (part.strip() for part in spec.split(","))):
                name, _, nth = item.partition("@")
                self._targets[name] = int(nth) if nth else 1
        self._hits: Counter[str] = Counter()
        self.armed = bool(self._targets)

    def hit(self, point: str) -> None:
        """Die here with SIGKILL if this point is armed (no cleanup, like a real crash)."""
        if not self.armed or point not in self._targets:
            return
        self._hits[point] += 1
        if self._hits[point] == self._targets[point]:
            logging.getLogger(__name__).warning("crash point %s reached: SIGKILL", point)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)
