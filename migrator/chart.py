"""The duration chart of the admin's history page, as plain geometry for an inline SVG.

Why a server-rendered SVG and not a charting library: the admin is a local review tool
that must work offline and behind strict networks, so it loads no script and no asset
from anywhere; the page's template draws the bars this module computes, and a test (or
a screen reader) reads the same numbers from the HTML.  Everything here is pure: points
in, coordinates out.

Bars are in the order the migrations were applied (time runs left to right) and their
heights are linear in the duration, so one slow migration towers over the rest; it is
also drawn in another colour and named in the caption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from migrator.formatting import duration, when

WIDTH, HEIGHT = 760, 190
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 14, 40  # margins: y labels left, version labels below
MAX_BAR_WIDTH = 36.0
MIN_LABEL_SLOT = 34.0  # narrower slots label only the first, last and slowest bars


@dataclass(frozen=True)
class Point:
    """One migration's run: what the chart is drawn from."""

    version: str
    name: str
    applied_at: datetime
    duration_ms: float
    url: str = ""


@dataclass(frozen=True)
class Bar:
    point: Point
    x: float
    y: float
    width: float
    height: float
    slowest: bool
    label: str  # text under the bar ("" when there is no room)

    @property
    def center(self) -> float:
        return self.x + self.width / 2

    @property
    def title(self) -> str:
        return (
            f"{self.point.version} {self.point.name}: {duration(self.point.duration_ms)}, "
            f"applied {when(self.point.applied_at)}"
        )


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float  # the y of the time axis
    bars: list[Bar]
    ticks: list[Tick]
    slowest: Bar | None
    first_applied: datetime
    last_applied: datetime

    @property
    def label_y(self) -> float:
        return self.bottom + 14

    @property
    def dates_y(self) -> float:
        return self.bottom + 32

    @property
    def first_label(self) -> str:
        return when(self.first_applied)

    @property
    def last_label(self) -> str:
        return when(self.last_applied)

    @property
    def slowest_duration(self) -> str:
        return duration(self.slowest.point.duration_ms) if self.slowest else ""


def duration_chart(
    points: Sequence[Point], width: int = WIDTH, height: int = HEIGHT
) -> Chart | None:
    """Lay out one bar per point, oldest first; ``None`` when there is nothing to draw."""
    if not points:
        return None
    ordered = sorted(points, key=lambda p: (p.applied_at, p.version))
    longest = max(p.duration_ms for p in ordered)
    slowest_point = next((p for p in ordered if p.duration_ms == longest), None)
    if longest <= 0:
        slowest_point = None  # all faked or instant: nothing stands out
    plot_left, plot_right = float(LEFT), float(width - RIGHT)
    plot_top, plot_bottom = float(TOP), float(height - BOTTOM)
    plot_height = plot_bottom - plot_top
    slot = (plot_right - plot_left) / len(ordered)
    bar_width = max(1.0, min(MAX_BAR_WIDTH, slot * 0.7))
    bars = []
    for index, point in enumerate(ordered):
        share = point.duration_ms / longest if longest > 0 else 0.0
        bar_height = max(1.0, plot_height * share)  # an instant step still shows as a line
        is_slowest = point is slowest_point
        room = slot >= MIN_LABEL_SLOT or is_slowest or index in (0, len(ordered) - 1)
        bars.append(
            Bar(
                point=point,
                x=round(plot_left + index * slot + (slot - bar_width) / 2, 2),
                y=round(plot_bottom - bar_height, 2),
                width=round(bar_width, 2),
                height=round(bar_height, 2),
                slowest=is_slowest,
                label=point.version if room else "",
            )
        )
    ticks = [Tick(plot_bottom, "0")]
    if longest > 0:
        ticks += [
            Tick(round(plot_bottom - plot_height / 2, 2), duration(longest / 2)),
            Tick(plot_top, duration(longest)),
        ]
    return Chart(
        width=width,
        height=height,
        left=plot_left,
        right=plot_right,
        top=plot_top,
        bottom=plot_bottom,
        bars=bars,
        ticks=ticks,
        slowest=next((bar for bar in bars if bar.slowest), None),
        first_applied=ordered[0].applied_at,
        last_applied=ordered[-1].applied_at,
    )
