"""Child processes for the crash tests: a worker that starts checkouts, and a recovery process.

Run as a script (``python -m tests.crash.worker start --n 5 --prefix crash-1``; settings and
crash points come from the environment), or through `tests.crash.procs`, which forks these
functions from a pre-loaded fork server so that a child costs milliseconds instead of the
two seconds an interpreter needs to import SQLAlchemy: the crash suite must stay fast.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from orchestrator.api import Orchestrator
from orchestrator.cli.recovery import recover_command, verify_command
from orchestrator.config import load_settings
from orchestrator.errors import OrchestratorError
from orchestrator.sandbox.examples import DIGITAL, TOKEN, VISA, example_request
from orchestrator.store.database import head_revision

log = logging.getLogger("tests.crash.worker")

# Read the migration scripts once here, so that children forked from the fork server (which
# imports this module) do not each spend a quarter second on it when they check the schema.
head_revision()

ONE_ITEM = [{"sku_id": 196777, "quantity": 1}]


def request(app_order_id: str, *, payment: str = "token", physical: bool = True) -> dict[str, Any]:
    """A checkout request for the sandbox's catalogue (physical goods pass through shipping)."""
    return example_request(
        app_order_id,
        skus=ONE_ITEM if physical else DIGITAL,
        payment=VISA if payment == "card" else TOKEN,
    )


def _prepare(env: Mapping[str, str] | None, log_path: str | None) -> None:
    """Apply the child's environment and send its logs (and stdout) to a file."""
    if env is not None:
        os.environ.update(env)
    if log_path is not None:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {os.getpid()} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


async def _start_all(requests: list[dict[str, Any]], run: bool) -> int:
    failures = 0
    async with Orchestrator(load_settings()) as orch:

        async def one(req: dict[str, Any]) -> None:
            nonlocal failures
            try:
                checkout = await orch.start(req, run=run)
                log.info("checkout %s: %s", checkout.app_order_id, checkout.state)
            except OrchestratorError as exc:
                failures += 1
                log.warning("checkout %s: %s: %s", req["app_order_id"], type(exc).__name__, exc)

        await asyncio.gather(*(one(r) for r in requests))
    return failures


def start(
    requests: list[dict[str, Any]],
    *,
    env: Mapping[str, str] | None = None,
    log_path: str | None = None,
    run: bool = True,
) -> None:
    """Start (and drive) checkouts concurrently; exit 3 if any raised (e.g. LeaseLost)."""
    _prepare(env, log_path)
    failures = asyncio.run(_start_all(requests, run))
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.exit(3 if failures else 0)


def recover(
    args: list[str], *, env: Mapping[str, str] | None = None, log_path: str | None = None
) -> None:
    """`orchestrator recover ARGS` in this process (the CLI's own code path and exit codes)."""
    _prepare(env, log_path)
    import typer

    app = typer.Typer()
    app.command("recover")(recover_command)
    app.command("verify")(verify_command)
    app(["recover", *args])  # exits with the CLI's exit code (SystemExit)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.crash.worker")
    sub = parser.add_subparsers(dest="command", required=True)
    start_p = sub.add_parser("start", help="start N checkouts through Orchestrator")
    start_p.add_argument("--n", type=int, default=1)
    start_p.add_argument("--prefix", required=True, help="app_order_id prefix (ids PREFIX-i)")
    start_p.add_argument("--payment", choices=("token", "card"), default="token")
    start_p.add_argument("--digital", action="store_true")
    start_p.add_argument("--register-only", action="store_true")
    args = parser.parse_args(argv)
    requests = [
        request(f"{args.prefix}-{i}", payment=args.payment, physical=not args.digital)
        for i in range(args.n)
    ]
    start(requests, run=not args.register_only)


if __name__ == "__main__":
    main()
