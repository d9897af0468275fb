"""Real child processes for the crash tests, forked from a fork server that pre-imported them.

Each child is an ordinary OS process (its own pid, killable with SIGKILL, stoppable with
SIGSTOP); only the import cost is shared: the fork server imports `tests.crash.worker` (and with
it SQLAlchemy, psycopg, httpx) once per session.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from tests.crash import worker

_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload(["tests.crash.worker"])


@dataclass
class Child:
    """One child process and the file its stdout, stderr and logs go to."""

    process: BaseProcess
    log_path: Path

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def wait(self, timeout: float = 60.0) -> int:
        """Its exit code (negative: killed by that signal); fails the test if it hangs."""
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.kill()
            raise AssertionError(f"child {self.pid} did not exit in {timeout} s:\n{self.log()}")
        return self.process.exitcode

    def kill(self) -> None:
        if self.process.exitcode is None:
            os.kill(self.pid, signal.SIGKILL)
            self.process.join(10)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def spawn(target: Callable[..., None], log_path: Path, *args: Any, **kwargs: Any) -> Child:
    process = _CTX.Process(
        target=target, args=args, kwargs={**kwargs, "log_path": str(log_path)}, daemon=True
    )
    process.start()
    return Child(process, log_path)


def start_worker(
    env: Mapping[str, str],
    log_path: Path,
    requests: list[dict[str, Any]],
    *,
    crash_at: str | None = None,
    run: bool = True,
) -> Child:
    """A worker process starting `requests`; with `crash_at` it SIGKILLs itself at that point."""
    child_env = dict(env)
    child_env["ORCHESTRATOR_CRASH_AT"] = crash_at or ""
    return spawn(worker.start, log_path, requests, env=child_env, run=run)


def start_recovery(env: Mapping[str, str], log_path: Path, *args: str) -> Child:
    """`orchestrator recover ARGS` (default --until-idle --json) as a process."""
    child_env = {**env, "ORCHESTRATOR_CRASH_AT": ""}
    return spawn(worker.recover, log_path, list(args) or ["--until-idle", "--json"], env=child_env)


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll until `predicate` holds (used to pick a kill instant, never to judge a result)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.01)
