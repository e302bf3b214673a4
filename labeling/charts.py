"""Geometry for server-rendered SVG charts: pure functions whose results templates loop over."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Room around the plot for the y-axis numbers on the left and the period names below.
MARGIN_LEFT = 36
MARGIN_RIGHT = 8
MARGIN_TOP = 8
MARGIN_BOTTOM = 22
# Share of each period's slot a bar fills; the rest is the gap between bars.
BAR_FILL = 0.8
MAX_X_TICKS = 8


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    text: str


@dataclass(frozen=True)
class LegendEntry:
    name: str
    color: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    legend: list[LegendEntry]

    @property
    def y_label_x(self) -> float:
        return self.plot_left - 6

    @property
    def x_label_y(self) -> float:
        return self.height - 6


def stacked_bars(
    periods: Sequence[str],
    series: Mapping[str, Sequence[int]],
    colors: Mapping[str, str],
    *,
    width: int = 720,
    height: int = 220,
) -> BarChart:
    """One bar per period, each series stacked on the previous ones in mapping order."""
    left, right = float(MARGIN_LEFT), float(width - MARGIN_RIGHT)
    top, bottom = float(MARGIN_TOP), float(height - MARGIN_BOTTOM)
    totals = [sum(values[i] for values in series.values()) for i in range(len(periods))]
    step = nice_step(max(totals, default=0))
    y_max = step * max(1, math.ceil(max(totals, default=0) / step))
    scale = (bottom - top) / y_max
    slot = (right - left) / max(1, len(periods))
    bar_width = round(slot * BAR_FILL, 2)

    bars: list[Bar] = []
    for index, period in enumerate(periods):
        x = round(left + slot * index + (slot - bar_width) / 2, 2)
        base = bottom
        for name, values in series.items():
            count = values[index]
            if not count:
                continue
            bar_height = count * scale
            base -= bar_height
            bars.append(
                Bar(
                    x=x,
                    y=round(base, 2),
                    width=bar_width,
                    height=round(bar_height, 2),
                    color=colors[name],
                    title=f"{name}: {count} in {period}",
                )
            )
    y_ticks = [
        Tick(round(bottom - value * scale, 2), str(value)) for value in range(0, y_max + 1, step)
    ]
    every = max(1, math.ceil(len(periods) / MAX_X_TICKS))
    x_ticks = [
        Tick(round(left + slot * (index + 0.5), 2), period)
        for index, period in enumerate(periods)
        if index % every == 0
    ]
    legend = [LegendEntry(name, colors[name]) for name in series]
    return BarChart(width, height, left, right, top, bottom, bars, y_ticks, x_ticks, legend)


def nice_step(largest: int, ticks: int = 4) -> int:
    """A whole tick interval of 1, 2 or 5 times a power of ten giving about `ticks` ticks."""
    rough = max(1.0, largest / ticks)
    power = 10 ** math.floor(math.log10(rough))
    return next(int(m * power) for m in (1, 2, 5, 10) if m * power >= rough)
