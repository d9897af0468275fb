"""The one table of what is secret (tests/data/secret_cases.json), as every layer's tests read it.

Validation, the client's redaction, the log handlers and the database tripwire are all tested
against these cases, so the four cannot drift apart: a case added here is checked everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator import sensitive

TABLE = Path(__file__).parent / "data" / "secret_cases.json"


@dataclass(frozen=True)
class SecretCase:
    id: str
    rule: str | None
    text: str | None = None
    json: Any = None
    credentials: tuple[str, ...] = field(default=())

    @property
    def is_text(self) -> bool:
        return self.text is not None

    def applies_in(self, layer: str) -> bool:
        """Whether `layer` must find this case (a secret whose rule that layer applies)."""
        return self.rule is not None and layer in sensitive.RULES[self.rule].layers

    def secrets(self) -> list[str]:
        """Substrings that must be gone once the case is redacted (for text cases)."""
        return list(self.credentials) if self.rule == "credential" else []


def _load() -> list[SecretCase]:
    cases = []
    for raw in json.loads(TABLE.read_text(encoding="utf-8"))["cases"]:
        case = SecretCase(
            id=raw["id"],
            rule=raw["rule"],
            text=raw.get("text"),
            json=raw.get("json"),
            credentials=tuple(raw.get("credentials", ())),
        )
        assert (case.text is None) != ("json" not in raw), case.id
        assert case.rule is None or case.rule in sensitive.RULES, case.id
        # Configured credentials are process-wide; these values exist only in this table.
        for value in case.credentials:
            sensitive.register_credential(value)
        cases.append(case)
    return cases


CASES = _load()
TEXT_CASES = [case for case in CASES if case.is_text]
JSON_CASES = [case for case in CASES if not case.is_text]


def params(cases: list[SecretCase]) -> list[Any]:
    """pytest parameters named by case id."""
    return [pytest.param(case, id=case.id) for case in cases]


def as_json(case: SecretCase) -> Any:
    """The case as a JSON document (a text case inside a string, as Violet's messages come)."""
    return {"note": case.text} if case.is_text else case.json
