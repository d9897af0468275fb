"""README.md cannot drift from the code: its state diagram is the machine's own mermaid output,
and its configuration table lists every setting with its environment name and default."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

from orchestrator.config import Settings
from orchestrator.engine import machine

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_diagram_is_the_machines_mermaid() -> None:
    blocks = re.findall(r"^```mermaid\n(.*?)^```$", _readme(), flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, "README.md should hold exactly one mermaid block"
    assert blocks[0].strip() == machine.mermaid().strip(), (
        "README's diagram is stale: paste the output of `orchestrator diagram`"
    )


def _env_name(field: str) -> str:
    alias: Any = Settings.model_fields[field].validation_alias
    return next(c for c in alias.choices if isinstance(c, str) and c.isupper())


def _shown_default(field: str) -> str:
    info = Settings.model_fields[field]
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, Path):
            return "~/" + str(value.relative_to(Path.home()))
        return str(value)
    if info.default is None or info.default is PydanticUndefined:
        return "unset"
    return str(info.default)


def _config_table() -> dict[str, str]:
    text = _readme().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z_]+)` \| `?([^`|]+?)`? \|", text, flags=re.MULTILINE)
    return dict(rows)


def test_readme_configuration_table_matches_settings() -> None:
    table = _config_table()
    expected = {_env_name(field): _shown_default(field) for field in Settings.model_fields}
    assert table == expected
