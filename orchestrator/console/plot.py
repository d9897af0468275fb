"""Failures per error type over time, drawn on the server as inline SVG: no charting library, no
JavaScript, nothing fetched. Each bar is a time bucket, stacked by error type; hovering a piece
shows its count (the SVG `<title>`). Error types are Violet's text: every one is escaped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from markupsafe import Markup, escape

from orchestrator.audit import FailureCount

__all__ = ["Chart", "failure_chart"]

#: Distinct on light and dark grounds, and told apart by most colour-blind readers.
PALETTE: Final = (
    "#d1495b",
    "#edae49",
    "#00798c",
    "#6a4c93",
    "#66a182",
    "#2e4057",
    "#f37748",
    "#8d96a3",
)
_MOST_TYPES: Final = len(PALETTE) - 1  # the rest are drawn together as "other"
_WIDTH: Final = 720
_HEIGHT: Final = 200
_LEFT: Final = 36
_BOTTOM: Final = 22
_TOP: Final = 8


@dataclass(frozen=True, slots=True)
class Chart:
    """The drawing and its legend (type, colour, total), biggest first."""

    svg: Markup
    legend: list[tuple[str, str, int]]
    total: int


def _floor(at: datetime, bucket_seconds: int) -> datetime:
    seconds = int(at.timestamp()) // bucket_seconds * bucket_seconds
    return datetime.fromtimestamp(seconds, UTC)


def failure_chart(
    counts: Sequence[FailureCount], *, since: datetime, until: datetime, bucket_seconds: int
) -> Chart:
    """A stacked bar per bucket from `since` to `until`, empty buckets included."""
    first = _floor(since, bucket_seconds)
    buckets: list[datetime] = []
    at = first
    while at <= until:
        buckets.append(at)
        at += timedelta(seconds=bucket_seconds)
    totals: dict[str, int] = defaultdict(int)
    for c in counts:
        totals[c.error_type] += c.count
    ranked = sorted(totals, key=lambda t: (-totals[t], t))
    shown = ranked[:_MOST_TYPES] if len(ranked) > _MOST_TYPES + 1 else ranked
    colour = {t: PALETTE[i] for i, t in enumerate(shown)}
    other = "other types"
    cells: dict[datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for c in counts:
        key = c.error_type if c.error_type in colour else other
        cells[_floor(c.bucket, bucket_seconds)][key] += c.count
    legend = [(t, colour[t], totals[t]) for t in shown]
    if len(shown) < len(ranked):
        legend.append((other, PALETTE[-1], sum(totals[t] for t in ranked[len(shown) :])))
        colour[other] = PALETTE[-1]
    peak = max((sum(cells[b].values()) for b in buckets), default=0)
    return Chart(_svg(buckets, cells, colour, peak, bucket_seconds), legend, sum(totals.values()))


def _svg(
    buckets: list[datetime],
    cells: dict[datetime, dict[str, int]],
    colour: dict[str, str],
    peak: int,
    bucket_seconds: int,
) -> Markup:
    plot_w = _WIDTH - _LEFT - 4
    plot_h = _HEIGHT - _TOP - _BOTTOM
    step = plot_w / max(len(buckets), 1)
    bar_w = max(step * 0.8, 1.0)
    scale = plot_h / peak if peak else 0.0
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="failed checkouts per error type">',
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_WIDTH - 4}" '
        f'y2="{_TOP + plot_h}"/>',
        f'<text class="tick" x="{_LEFT - 6}" y="{_TOP + 8}" text-anchor="end">{peak}</text>',
        f'<text class="tick" x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end">0</text>',
    ]
    label_every = max(1, len(buckets) // 8)
    for index, bucket in enumerate(buckets):
        x = _LEFT + index * step + (step - bar_w) / 2
        y = float(_TOP + plot_h)
        for error_type, n in sorted(cells.get(bucket, {}).items(), key=lambda kv: kv[0]):
            h = n * scale
            y -= h
            label = f"{bucket:%Y-%m-%d %H:%M}Z: {n} x {error_type}"
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour[error_type]}"><title>{escape(label)}</title></rect>'
            )
        if index % label_every == 0:
            text = f"{bucket:%H:%M}" if bucket_seconds < 86400 else f"{bucket:%m-%d}"
            if bucket_seconds < 86400 and bucket.hour == 0 and bucket.minute == 0:
                text = f"{bucket:%m-%d}"
            parts.append(
                f'<text class="tick" x="{x + bar_w / 2:.1f}" y="{_HEIGHT - 6}" '
                f'text-anchor="middle">{escape(text)}</text>'
            )
    if peak == 0:
        parts.append(
            f'<text class="empty" x="{_LEFT + plot_w / 2:.0f}" y="{_TOP + plot_h / 2:.0f}" '
            'text-anchor="middle">no failures in this window</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
