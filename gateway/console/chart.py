"""A horizontal bar chart of chargeback lines, as geometry the template draws as inline SVG. Pure.

Server-rendered SVG needs no script and no CDN, passes a strict Content-Security-Policy, and its labels are
text nodes the template escapes like any other value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.cost.report import Line

WIDTH = 720
LABEL_WIDTH = 200
VALUE_WIDTH = 110
BAR_HEIGHT = 20
GAP = 6
MAX_BARS = 20


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    cost: float
    queries: int
    y: float
    width: float  # px, proportional to cost (the largest bar fills the plot area)
    share: float  # of the report's total cost, 0..1


@dataclass(frozen=True, slots=True)
class Chart:
    bars: tuple[Bar, ...]
    width: int
    height: int
    label_width: int
    plot_width: int
    omitted: int  # lines beyond MAX_BARS, left to the table below the chart


def bar_chart(lines: Sequence[Line], total_cost: float, *, max_bars: int = MAX_BARS) -> Chart:
    """The first `max_bars` lines (the report sorts them by cost, largest first)."""
    shown = list(lines[:max_bars])
    plot = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    largest = max((line.cost for line in shown), default=0.0)
    bars = tuple(Bar(label=line.key, cost=line.cost, queries=line.queries, y=GAP + i * (BAR_HEIGHT + GAP),
                     width=round(plot * line.cost / largest, 1) if largest > 0 else 0.0,
                     share=line.cost / total_cost if total_cost > 0 else 0.0)
                 for i, line in enumerate(shown))
    return Chart(bars=bars, width=WIDTH, height=GAP + len(bars) * (BAR_HEIGHT + GAP), label_width=LABEL_WIDTH,
                 plot_width=plot, omitted=max(0, len(lines) - len(shown)))
