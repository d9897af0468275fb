"""The base every Violet model shares: tolerant of what Violet adds, redacting its free text."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from orchestrator.sensitive import redact_text

__all__ = ["LOOSE", "Loose", "ScrubbedText"]

LOOSE = ConfigDict(extra="ignore", populate_by_name=True)


class Loose(BaseModel):
    """Unknown fields are ignored: a field Violet adds must never fail a parse."""

    model_config = LOOSE


def _scrubbed(value: str | None) -> str | None:
    return None if value is None else redact_text(value)


#: Free text from Violet that is stored and shown (error messages, merchant names): redacted by
#: the one specification of what is secret as it is parsed, so no later use can leak it.
ScrubbedText = Annotated[str | None, AfterValidator(_scrubbed)]
