"""Geometry for server-rendered SVG charts: pure functions whose results templates loop over."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labeling.templatetags.plain_numbers import people_number

# Room around the plot for the y-axis numbers on the left and the period names below.
MARGIN_LEFT = 36
MARGIN_RIGHT = 8
MARGIN_TOP = 8
MARGIN_BOTTOM = 22
# Share of each period's slot a bar fills; the rest is the gap between bars.
BAR_FILL = 0.8
MAX_X_TICKS = 8
# A tick under a bar shows at most this many characters (the bar's title has the whole name),
# each about this many units wide at the 13-unit font phones draw it in (sift.css; 11 on wider
# screens); ticks are spaced so none overlap at either size.
TICK_CHARS = 14
CHAR_WIDTH = 7.7


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
class Frame:
    """The drawing area and the plot inside it, shared by every kind of chart."""

    width: int
    height: int
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float

    @property
    def y_label_x(self) -> float:
        return self.plot_left - 6

    @property
    def x_label_y(self) -> float:
        return self.height - 6


@dataclass(frozen=True)
class BarChart(Frame):
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    legend: list[LegendEntry]


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Line:
    name: str
    color: str
    points: list[Point]
    # SVG polygon points around the band (upper edge left to right, lower edge back); "" if none.
    band: str

    @property
    def polyline(self) -> str:
        return " ".join(f"{point.x},{point.y}" for point in self.points)


@dataclass(frozen=True)
class LineChart(Frame):
    lines: list[Line]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    legend: list[LegendEntry]


def stacked_bars(
    periods: Sequence[str],
    series: Mapping[str, Sequence[int]],
    colors: Mapping[str, str],
    *,
    width: int = 720,
    height: int = 220,
    title: str = "{name}: {count} in {period}",
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
                    title=title.format(name=name, count=people_number(count), period=period),
                )
            )
    y_ticks = [
        Tick(round(bottom - value * scale, 2), people_number(value))
        for value in range(0, y_max + 1, step)
    ]
    texts = [_shortened(period) for period in periods]
    room = max(len(text) for text in texts) * CHAR_WIDTH + 8 if texts else 1.0
    fitting = max(1, int((right - left) // room))
    every = max(1, math.ceil(len(periods) / min(MAX_X_TICKS, fitting)))
    x_ticks = [
        Tick(round(left + slot * (index + 0.5), 2), text)
        for index, text in enumerate(texts)
        if index % every == 0
    ]
    legend = [LegendEntry(name, colors[name]) for name in series]
    return BarChart(width, height, left, right, top, bottom, bars, y_ticks, x_ticks, legend)


def category_bars(
    names: Sequence[str],
    counts: Sequence[int],
    colors: Sequence[str],
    *,
    width: int = 720,
    height: int = 220,
) -> BarChart:
    """One bar per category in its own colour, e.g. answers per label."""
    series = {
        name: [count if other == index else 0 for other in range(len(names))]
        for index, (name, count) in enumerate(zip(names, counts, strict=True))
    }
    return stacked_bars(
        names,
        series,
        dict(zip(names, colors, strict=True)),
        width=width,
        height=height,
        title="{name}: {count}",
    )


def line_chart(
    xs: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    colors: Mapping[str, str],
    *,
    bands: Mapping[str, Sequence[tuple[float, float] | None]] | None = None,
    y_max: float | None = None,
    x_name: str = "",
    y_suffix: str = "",
    width: int = 720,
    height: int = 220,
) -> LineChart:
    """Lines over shared numeric x values, gaps where a value is None, with optional bands.

    Both axes start at 0. The y axis reaches `y_max` when given (e.g. 100 for percentages),
    otherwise the largest value or band edge rounded up to a whole tick. A series' band is a
    (low, high) pair per x, drawn as one shaded polygon through the points that have one.
    """
    left, right = float(MARGIN_LEFT), float(width - MARGIN_RIGHT)
    top, bottom = float(MARGIN_TOP), float(height - MARGIN_BOTTOM)
    bands = bands or {}
    highs = [pair[1] for band in bands.values() for pair in band if pair]
    values = [value for ys in series.values() for value in ys if value is not None]
    y_largest = y_max or max(values + highs, default=0)
    y_step = nice_step(math.ceil(y_largest), ticks=5)
    y_top = y_step * max(1, math.ceil(y_largest / y_step))
    x_step = nice_step(math.ceil(max(xs, default=0)), ticks=MAX_X_TICKS)
    x_top = x_step * max(1, math.ceil(max(xs, default=0) / x_step))

    def to_x(value: float) -> float:
        return round(left + value * (right - left) / x_top, 2)

    def to_y(value: float) -> float:
        return round(bottom - value * (bottom - top) / y_top, 2)

    lines = []
    for name, ys in series.items():
        points = [
            Point(to_x(x), to_y(y), f"{name}: {y:g}{y_suffix} at {x:g} {x_name}".rstrip())
            for x, y in zip(xs, ys, strict=True)
            if y is not None
        ]
        edges = [(x, pair) for x, pair in zip(xs, bands.get(name, ()), strict=False) if pair]
        outline = [(to_x(x), to_y(high)) for x, (_, high) in edges] + [
            (to_x(x), to_y(low)) for x, (low, _) in reversed(edges)
        ]
        band = " ".join(f"{x},{y}" for x, y in outline)
        lines.append(Line(name, colors[name], points, band))
    y_ticks = [Tick(to_y(value), f"{value:g}{y_suffix}") for value in range(0, y_top + 1, y_step)]
    x_ticks = [Tick(to_x(value), f"{value:g}") for value in range(0, x_top + 1, x_step)]
    legend = [LegendEntry(name, colors[name]) for name in series]
    return LineChart(width, height, left, right, top, bottom, lines, y_ticks, x_ticks, legend)


def nice_step(largest: int, ticks: int = 4) -> int:
    """A whole tick interval of 1, 2 or 5 times a power of ten giving about `ticks` ticks."""
    rough = max(1.0, largest / ticks)
    power = 10 ** math.floor(math.log10(rough))
    return next(int(m * power) for m in (1, 2, 5, 10) if m * power >= rough)


def _shortened(text: str) -> str:
    """``text`` cut to ``TICK_CHARS`` characters, an ellipsis marking the cut."""
    return text if len(text) <= TICK_CHARS else text[: TICK_CHARS - 1] + "\u2026"
