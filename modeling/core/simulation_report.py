"""The lead's dashboard figures for an offline run: `simulate --report`.

A simulation knows what the live dashboard can only estimate: random sampling's real learning
curve on the same pool and test set. So the labels saved here are the true figure, the one
the dashboard's estimate (modeling/core/labels_saved.py) tries to approach. Curves in, files out;
no Django.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from modeling.core.labels_saved import labels_to_reach
from modeling.core.simulation import CurvePoint

Curves = Mapping[str, Sequence[Sequence[CurvePoint]]]

REPORT_FILES = ("labels_saved.csv", "labels_saved.png", "compute.csv", "report.json")


@dataclass(frozen=True)
class SavedPoint:
    """What one strategy's mean curve reached at one label count, and what random needed."""

    labels: int
    accuracy: float
    random_labels: float | None  # None: random sampling never got there within its budget
    labels_saved: float | None


def mean_curve(runs: Sequence[Sequence[CurvePoint]]) -> tuple[list[int], list[float]]:
    """Label counts present in every repeat and the mean accuracy at each."""
    rounds = min(len(curve) for curve in runs)
    labels = [point.labels for point in runs[0][:rounds]]
    accuracy = np.mean([[point.accuracy for point in curve[:rounds]] for curve in runs], axis=0)
    return labels, [float(value) for value in accuracy]


def true_labels_saved(curves: Curves) -> dict[str, list[SavedPoint]]:
    """For each strategy but random, at each label count: random's labels for the same accuracy.

    Random's labels come from its own mean curve, interpolated between grid points; where the
    strategy is more accurate than random ever got, there is no figure (None), only the
    knowledge that random needs more than its whole budget.
    """
    if "random" not in curves:
        return {}
    random_labels, random_accuracy = mean_curve(curves["random"])
    saved: dict[str, list[SavedPoint]] = {}
    for name, runs in curves.items():
        if name == "random":
            continue
        points = []
        for labels, accuracy in zip(*mean_curve(runs), strict=True):
            needed = labels_to_reach(random_labels, random_accuracy, accuracy)
            points.append(
                SavedPoint(labels, accuracy, needed, None if needed is None else needed - labels)
            )
        saved[name] = points
    return saved


def write_report(out: Path, curves: Curves, title: str) -> list[str]:
    """Write the dashboard's offline figures into ``out``; returns the file names written."""
    saved = true_labels_saved(curves)
    with (out / "labels_saved.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["strategy", "labels", "accuracy", "random_labels", "labels_saved"])
        for name, points in saved.items():
            for point in points:
                writer.writerow(
                    [
                        name,
                        point.labels,
                        f"{point.accuracy:.6f}",
                        "" if point.random_labels is None else f"{point.random_labels:.1f}",
                        "" if point.labels_saved is None else f"{point.labels_saved:.1f}",
                    ]
                )
    with (out / "compute.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["strategy", "repeats", "rounds", "seconds", "seconds_per_round"])
        for name, runs in curves.items():
            seconds = sum(point.seconds for curve in runs for point in curve)
            rounds = sum(len(curve) for curve in runs)
            writer.writerow([name, len(runs), rounds, f"{seconds:.2f}", f"{seconds / rounds:.3f}"])
    _plot_labels_saved(out / "labels_saved.png", saved, title)
    final = {name: asdict(points[-1]) for name, points in saved.items() if points}
    (out / "report.json").write_text(
        json.dumps(
            {
                "labels_saved_at_final": final,
                "method": (
                    "random sampling's mean learning curve from this run, interpolated "
                    "linearly between rounds, inverted at each strategy's mean accuracy"
                ),
            },
            indent=2,
        )
        + "\n"
    )
    return list(REPORT_FILES)


def _plot_labels_saved(path: Path, saved: Mapping[str, Sequence[SavedPoint]], title: str) -> None:
    figure = Figure(figsize=(8, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, points in saved.items():
        known = [(p.labels, p.labels_saved) for p in points if p.labels_saved is not None]
        axes.plot([x for x, _ in known], [y for _, y in known], marker=".", label=name)
    axes.axhline(0, color="#6b7280", linewidth=1)
    axes.set_title(f"{title}: labels saved against random sampling (true figure)")
    axes.set_xlabel("labeled items")
    axes.set_ylabel("labels random needs more")
    axes.grid(alpha=0.3)
    if saved:
        axes.legend(loc="upper left")
    figure.savefig(path, dpi=120)
