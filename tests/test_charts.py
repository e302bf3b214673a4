"""Chart geometry: literal counts in, the coordinates the template draws out."""

from __future__ import annotations

import itertools

import pytest

from labeling.charts import (
    MARGIN_LEFT,
    MARGIN_TOP,
    category_bars,
    line_chart,
    nice_step,
    stacked_bars,
)


@pytest.mark.parametrize(
    ("largest", "step"), [(0, 1), (3, 1), (9, 5), (20, 5), (41, 20), (400, 100), (1234, 500)]
)
def test_ticks_step_by_one_two_or_five_times_a_power_of_ten(largest: int, step: int) -> None:
    assert nice_step(largest) == step


def test_series_stack_from_the_axis_up_and_zero_counts_draw_nothing() -> None:
    chart = stacked_bars(
        ["Mon", "Tue"],
        {"bob": [6, 0], "dora": [3, 2]},
        {"bob": "#111111", "dora": "#222222"},
        width=236,
        height=130,
    )
    # Plot: x 36..228 (two slots of 96), y 8..108; totals 9 and 2 give ticks 0, 5, 10.
    assert (chart.plot_left, chart.plot_top, chart.plot_bottom) == (MARGIN_LEFT, MARGIN_TOP, 108)
    assert [(t.position, t.text) for t in chart.y_ticks] == [(108, "0"), (58, "5"), (8, "10")]
    assert [(b.x, b.y, b.width, b.height, b.color) for b in chart.bars] == [
        (45.6, 48, 76.8, 60, "#111111"),
        (45.6, 18, 76.8, 30, "#222222"),
        (141.6, 88, 76.8, 20, "#222222"),
    ]
    assert [bar.title for bar in chart.bars] == [
        "bob: 6 in Mon",
        "dora: 3 in Mon",
        "dora: 2 in Tue",
    ]
    assert [(t.position, t.text) for t in chart.x_ticks] == [(84, "Mon"), (180, "Tue")]


def test_long_series_label_only_some_periods() -> None:
    periods = [f"day {n}" for n in range(20)]
    chart = stacked_bars(periods, {"bob": [1] * 20}, {"bob": "#111111"})

    assert [tick.text for tick in chart.x_ticks] == [
        "day 0",
        "day 3",
        "day 6",
        "day 9",
        "day 12",
        "day 15",
        "day 18",
    ]
    assert len(chart.bars) == 20


def test_lines_skip_missing_values_and_bands_wrap_their_points() -> None:
    chart = line_chart(
        [10, 20, 40],
        {"eval": [50, None, 75], "cv": [40, 60, 70]},
        {"eval": "#111111", "cv": "#222222"},
        bands={"eval": [(40, 60), None, (70, 80)]},
        y_max=100,
        x_name="labels",
        y_suffix="%",
        width=236,
        height=130,
    )
    # Plot: x 36..228 for 0..40 labels (4.8 px each), y 108..8 for 0..100% (1 px each).
    evaluation, cv = chart.lines
    assert evaluation.polyline == "84.0,58.0 228.0,33.0"
    assert cv.polyline == "84.0,68.0 132.0,48.0 228.0,38.0"
    assert evaluation.band == "84.0,48.0 228.0,28.0 228.0,38.0 84.0,68.0"
    assert cv.band == ""
    assert [p.title for p in evaluation.points] == [
        "eval: 50% at 10 labels",
        "eval: 75% at 40 labels",
    ]
    assert [(t.position, t.text) for t in chart.y_ticks] == [
        (108, "0%"),
        (88, "20%"),
        (68, "40%"),
        (48, "60%"),
        (28, "80%"),
        (8, "100%"),
    ]
    assert [t.text for t in chart.x_ticks] == ["0", "5", "10", "15", "20", "25", "30", "35", "40"]
    assert [(entry.name, entry.color) for entry in chart.legend] == [
        ("eval", "#111111"),
        ("cv", "#222222"),
    ]


def test_an_empty_line_chart_still_has_axes() -> None:
    chart = line_chart([], {"eval": []}, {"eval": "#111111"})

    assert chart.lines[0].points == []
    assert [t.text for t in chart.y_ticks] == ["0", "1"]


def test_long_category_names_are_cut_short_and_spaced_apart() -> None:
    # Banking77's 77 intents, some 47 characters long, under a 720-pixel chart.
    names = [f"balance_not_updated_after_cheque_number_{n}" for n in range(77)]
    chart = category_bars(names, [1] * 77, ["#111111"] * 77)

    texts = [tick.text for tick in chart.x_ticks]
    assert texts[:2] == ["balance_not_u\u2026", "balance_not_u\u2026"]
    assert all(len(text) <= 14 for text in texts)
    gaps = [b.position - a.position for a, b in itertools.pairwise(chart.x_ticks)]
    assert min(gaps) >= 14 * 6.5  # no two ticks' texts overlap
    assert len(texts) >= 5
    assert chart.bars[0].title == "balance_not_updated_after_cheque_number_0: 1"


def test_category_bars_give_each_category_its_colour() -> None:
    chart = category_bars(["yes", "no", "maybe"], [3, 1, 0], ["#111111", "#222222", "#333333"])

    assert [(bar.title, bar.color) for bar in chart.bars] == [
        ("yes: 3", "#111111"),
        ("no: 1", "#222222"),
    ]
    assert chart.bars[0].height == pytest.approx(3 * chart.bars[1].height, abs=0.05)
    assert [t.text for t in chart.x_ticks] == ["yes", "no", "maybe"]
