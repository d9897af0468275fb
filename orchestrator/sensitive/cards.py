"""Card numbers: the Luhn check, finding every card in a text (as the database does), masking."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from orchestrator.sensitive.patterns import DIGIT_RUN_RE, DIGITS_RE, FULL_WIDTH, UUID_RE
from orchestrator.sensitive.rules import REDACTED


def is_luhn_valid(digits: str) -> bool:
    """The Luhn checksum every card number satisfies (ASCII digits)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_spans(text: str) -> Iterator[tuple[int, int, int]]:
    """(start, end, digit count) of each card number: of every run of digit groups, the windows
    of whole groups holding 13-19 digits are checked, from the left, shortest first (the order
    the database checks them in); after a hit the search goes on behind it."""
    shadow = UUID_RE.sub(lambda m: "u" * len(m.group()), text) if "-" in text else text
    for run in DIGIT_RUN_RE.finditer(shadow):
        groups = [
            (m.start(), m.end(), m.group().translate(FULL_WIDTH))
            for m in DIGITS_RE.finditer(shadow, run.start(), run.end())
        ]
        if sum(len(g[2]) for g in groups) < 13:
            continue
        first = 0
        while first < len(groups):
            digits = ""
            hit = None
            for last in range(first, len(groups)):
                digits += groups[last][2]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and is_luhn_valid(digits):
                    hit = last
                    break
            if hit is None:
                first += 1
                continue
            yield groups[first][0], groups[hit][1], len(digits)
            first = hit + 1


def mask_cards(text: str) -> str:
    """`text` with every card number `card_spans` finds replaced by ``[REDACTED]``."""
    out = []
    position = 0
    for start, end, _count in card_spans(text):
        out.append(text[position:start])
        out.append(REDACTED)
        position = end
    if not out:
        return text
    out.append(text[position:])
    return "".join(out)


def mask_card_number(value: Any) -> str:
    """``"4242424242424242"`` -> ``"****4242"``: the last four are what support needs."""
    digits = "".join(ch for ch in str(value).translate(FULL_WIDTH) if "0" <= ch <= "9")
    return "****" + digits[-4:] if len(digits) >= 4 else REDACTED
