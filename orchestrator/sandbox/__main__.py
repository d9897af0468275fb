"""``python -m orchestrator.sandbox``: serve the sandbox over HTTP until interrupted."""

from __future__ import annotations

import argparse
import os
from typing import Any

from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.server import SECRET_ENV, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.sandbox", description="Serve the local Violet sandbox."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8040, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every /v1 call")
    parser.add_argument(
        "--latency-jitter-ms", type=float, default=0.0, help="+- this much, uniformly, per call"
    )
    parser.add_argument(
        "--processing-ms",
        type=float,
        default=0.0,
        help="submitted orders stay PROCESSING this long",
    )
    parser.add_argument(
        "--webhook-time-scale",
        type=float,
        default=1.0,
        help="factor on Violet's webhook retry schedule (10 attempts over ~24 h)",
    )
    parser.add_argument(
        "--bucket-size",
        type=int,
        default=None,
        help="give each merchant a rate limit: a leaky bucket of this many requests (off if unset)",
    )
    parser.add_argument(
        "--bucket-leak-per-s", type=float, default=2.0, help="requests each bucket leaks a second"
    )
    parser.add_argument(
        "--bucket-time-scale",
        type=float,
        default=1.0,
        help="factor on bucket durations (leak, Retry-After); 0.01 runs them 100x faster",
    )
    parser.add_argument("--token-ttl", type=float, default=86400.0, help="access token seconds")
    parser.add_argument("--seed", type=int, default=0, help="seed for probabilistic faults")
    parser.add_argument("--app-id", type=int, default=SandboxConfig.app_id)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--allow-remote-control",
        action="store_true",
        help="serve the unauthenticated /_sandbox control surface on a non-loopback --host too",
    )
    args = parser.parse_args(argv)
    if args.bucket_size is not None and args.bucket_size < 1:
        parser.error("--bucket-size must be at least 1")
    if args.bucket_leak_per_s <= 0 or args.bucket_time_scale <= 0:
        parser.error("--bucket-leak-per-s and --bucket-time-scale must be > 0")
    defaults = SandboxConfig()
    secrets: dict[str, Any] = {
        field: os.environ.get(name) or getattr(defaults, field)
        for field, name in SECRET_ENV.items()
    }
    config = SandboxConfig(
        app_id=args.app_id,
        token_ttl_seconds=args.token_ttl,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        processing_ms=args.processing_ms,
        webhook_time_scale=args.webhook_time_scale,
        bucket_size=args.bucket_size,
        bucket_leak_per_s=args.bucket_leak_per_s,
        bucket_time_scale=args.bucket_time_scale,
        seed=args.seed,
        **secrets,
    )
    serve(
        args.host,
        args.port,
        config,
        log_level=args.log_level,
        allow_remote_control=args.allow_remote_control,
    )


if __name__ == "__main__":
    main()
