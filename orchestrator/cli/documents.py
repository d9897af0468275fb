"""JSON documents handed to the CLI (a checkout request, a card): from a file or stdin (`-`).

At most `limit` + 1 bytes are read, so `/dev/zero` or a runaway pipe is refused with a line
naming the source instead of filling memory. Every problem is an `InvalidRequest` naming the
source (exit 2), never echoing the content: it may hold card data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from orchestrator.errors import InvalidRequest

STDIN = "-"
LIMIT_SETTING = "ORCHESTRATOR_MAX_REQUEST_BYTES"


def source_name(source: Path | str) -> str:
    """How a source is named in messages."""
    return "stdin" if str(source) == STDIN else str(source)


def read_capped(source: Path | str, *, limit: int) -> bytes:
    """The bytes of a file, or of stdin for `-`; refused when there are more than `limit`."""
    name = source_name(source)
    try:
        if str(source) == STDIN:
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(source, "rb") as file:
                data = file.read(limit + 1)
    except OSError as exc:
        raise InvalidRequest([(name, exc.strerror or "cannot be read")]) from None
    if len(data) > limit:
        raise InvalidRequest(
            [(name, f"larger than {limit} bytes (the cap is set by {LIMIT_SETTING})")]
        )
    return data


def read_json_object(source: Path | str, *, limit: int) -> dict[str, Any]:
    """One JSON object from a file or stdin (a UTF-8 BOM some editors write is fine)."""
    name = source_name(source)
    raw = read_capped(source, limit=limit)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest([(name, "not UTF-8 text")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise InvalidRequest([(name, f"not valid JSON at {where}: {exc.msg}")]) from None
    except RecursionError:
        raise InvalidRequest([(name, "JSON nested too deeply")]) from None
    if not isinstance(data, dict):
        raise InvalidRequest([(name, "must hold one JSON object")])
    return data
