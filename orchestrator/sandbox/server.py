"""Serving the sandbox over real HTTP: in this process (``serve``) or a child (``SandboxServer``).

Crash tests and benchmarks need the sandbox in its own OS process, so that killing a client
never kills Violet, and so that several client processes share one Violet.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import uvicorn

from orchestrator.sandbox.app import create_app
from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.errors import DropConnection

logger = logging.getLogger(__name__)

ANNOUNCE_PREFIX = "sandbox listening on "
_ANNOUNCE = re.compile(r"sandbox listening on (http://(\S+):(\d+))/v1")

SECRET_ENV = {
    "app_secret": "ORCHESTRATOR_SANDBOX_APP_SECRET",
    "username": "ORCHESTRATOR_SANDBOX_USERNAME",
    "password": "ORCHESTRATOR_SANDBOX_PASSWORD",
}
"""Credentials reach a child process by environment, never on its (world-readable) command line."""


class _HideInjectedDrops(logging.Filter):
    """Uvicorn logs a traceback for every dropped connection; those are injected, not bugs."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DropConnection)


class _AnnouncingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, line: str) -> None:
        super().__init__(config)
        self._line = line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            print(self._line, flush=True)  # the one line SandboxServer waits for


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it Nagle + delayed ACK cost ~40 ms per response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one (only this machine can connect)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(address).split("%", 1)[0]).is_loopback for address in addresses
    )


def control_surface_allowed(host: str, *, allow_remote_control: bool) -> bool:
    """Whether /_sandbox is served, saying on stderr what a non-loopback bind exposes.

    The control surface has no authentication (reset, faults, confirming payments, call logs):
    on an address other hosts can reach it is served only when asked for explicitly.
    """
    if is_loopback(host):
        return True
    if allow_remote_control:
        print(
            f"warning: the sandbox listens on {host} with its control surface: anyone who can "
            "reach this address can reset it, inject faults and confirm payments under /_sandbox",
            file=sys.stderr,
            flush=True,
        )
        return True
    print(
        f"note: the sandbox listens on {host}, which other hosts can reach: the /_sandbox "
        "control surface (no authentication) is not served; pass --allow-remote-control to "
        "serve it anyway",
        file=sys.stderr,
        flush=True,
    )
    return False


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    config: SandboxConfig | None = None,
    *,
    log_level: str = "warning",
    allow_remote_control: bool = False,
) -> None:
    """Serve a fresh sandbox until SIGINT/SIGTERM; port 0 picks a free port (announced).

    On a non-loopback `host` the /_sandbox control surface is left out unless
    `allow_remote_control` (see `control_surface_allowed`).
    """
    control = control_surface_allowed(host, allow_remote_control=allow_remote_control)
    sock = _bind(host, port)
    actual_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    uconfig = uvicorn.Config(
        create_app(config, control=control),
        log_level=log_level,
        access_log=False,
        lifespan="off",
        backlog=2048,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
        proxy_headers=False,  # nothing sits in front of a sandbox; saves a middleware per call
        server_header=False,
    )
    logging.getLogger("uvicorn.error").addFilter(_HideInjectedDrops())
    server = _AnnouncingServer(uconfig, f"{ANNOUNCE_PREFIX}http://{shown_host}:{actual_port}/v1")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent.parent


class SandboxServer:
    """A sandbox in a child process: ``with SandboxServer() as s: ... s.base_url``."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 30.0,
        python: str = sys.executable,
        allow_remote_control: bool = False,
    ) -> None:
        self.config = config or SandboxConfig()
        self.host = host
        self.allow_remote_control = allow_remote_control
        self.requested_port = port
        self.startup_timeout = startup_timeout
        self.python = python
        self.port: int | None = None
        self.url: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None

    # -- addresses ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Violet base URL, e.g. ``http://127.0.0.1:43117/v1``."""
        return f"{self._root()}/v1"

    @property
    def control_url(self) -> str:
        return f"{self._root()}/_sandbox"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("sandbox server is not running")
        return self._process.pid

    def _root(self) -> str:
        if self.url is None:
            raise RuntimeError("sandbox server is not running")
        return self.url

    # -- lifecycle ---------------------------------------------------------------------------

    def _command(self) -> list[str]:
        c = self.config
        return [
            self.python, "-m", "orchestrator.sandbox",
            "--host", self.host,
            "--port", str(self.requested_port),
            "--app-id", str(c.app_id),
            "--latency-ms", repr(c.latency_ms),
            "--latency-jitter-ms", repr(c.latency_jitter_ms),
            "--processing-ms", repr(c.processing_ms),
            "--token-ttl", repr(c.token_ttl_seconds),
            "--webhook-time-scale", repr(c.webhook_time_scale),
            "--seed", str(c.seed),
            *(["--bucket-size", str(c.bucket_size)] if c.bucket_size is not None else []),
            "--bucket-leak-per-s", repr(c.bucket_leak_per_s),
            "--bucket-time-scale", repr(c.bucket_time_scale),
            *(["--allow-remote-control"] if self.allow_remote_control else []),
        ]  # fmt: skip

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        root = str(_project_root())
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        for field, name in SECRET_ENV.items():
            env[name] = getattr(self.config, field)
        return env

    def start(self) -> SandboxServer:
        if self._process is not None:
            raise RuntimeError("sandbox server already started")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child
        process = subprocess.Popen(
            self._command(),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            env=self._environment(),
            text=True,
        )
        self._process = process
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:  # drains stdout for the child's whole life
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="sandbox-stdout", daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(self._failure("did not announce its port in time"))
                try:
                    line = lines.get(timeout=remaining)
                except queue.Empty:
                    continue
                if line is None:
                    raise RuntimeError(self._failure("exited before listening"))
                match = _ANNOUNCE.search(line)
                if match:
                    self.url, self.port = match.group(1), int(match.group(3))
                    logger.info("sandbox server pid %s at %s", process.pid, self.base_url)
                    return self
        except BaseException:
            self.stop()
            raise

    def _failure(self, what: str) -> str:
        tail = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            tail = self._stderr.read()[-2000:].decode(errors="replace")
        return f"sandbox server {what}; stderr:\n{tail}"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not exit within ``timeout``."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self.url = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
