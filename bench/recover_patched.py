"""`python -m bench.recover_patched recover ...`: the orchestrator CLI with `sharded_http` applied.

Lets the recovery bench measure the proposed Violet-client fix in the real subprocess.
"""

from __future__ import annotations

import os

from bench import patches

patches.sharded_http(int(os.environ.get("BENCH_HTTP_SHARDS", "8")))

from orchestrator.cli.app import main  # noqa: E402 - imported after the patch on purpose

if __name__ == "__main__":
    main()
