"""The true labels saved that `simulate --report` writes, from literal learning curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeling.core.labels_saved import labels_to_reach
from modeling.core.simulation import CurvePoint
from modeling.core.simulation_report import mean_curve, true_labels_saved, write_report
from tests.fixtures import csv_rows


def curve(*points: tuple[int, float]) -> list[CurvePoint]:
    return [CurvePoint(labels, accuracy, accuracy, 0.5) for labels, accuracy in points]


RANDOM = [
    curve((25, 0.50), (50, 0.60), (75, 0.70), (100, 0.80)),
    curve((25, 0.50), (50, 0.60), (75, 0.70), (100, 0.80)),
]
# Reaches random's 100-label accuracy at 50 labels, and more than random ever does at 75.
ACTIVE = [
    curve((25, 0.60), (50, 0.80), (75, 0.90), (100, 0.92)),
    curve((25, 0.60), (50, 0.80), (75, 0.86), (100, 0.92)),
]


def test_a_curve_is_inverted_between_its_grid_points() -> None:
    assert labels_to_reach([25, 50, 75], [0.5, 0.6, 0.7], 0.65) == pytest.approx(62.5)
    assert labels_to_reach([25, 50, 75], [0.5, 0.6, 0.7], 0.4) == 25
    assert labels_to_reach([25, 50, 75], [0.5, 0.6, 0.7], 0.71) is None


def test_repeats_are_averaged_round_by_round() -> None:
    assert mean_curve(ACTIVE) == ([25, 50, 75, 100], pytest.approx([0.6, 0.8, 0.88, 0.92]))


def test_labels_saved_is_what_random_needs_for_the_same_accuracy_minus_what_was_used() -> None:
    [(name, points)] = true_labels_saved({"random": RANDOM, "active": ACTIVE}).items()

    assert name == "active"
    assert [(p.labels, p.random_labels, p.labels_saved) for p in points] == [
        (25, pytest.approx(50.0), pytest.approx(25.0)),
        (50, pytest.approx(100.0), pytest.approx(50.0)),
        (75, None, None),  # more accurate than random ever got within its budget
        (100, None, None),
    ]


def test_without_a_random_run_there_is_nothing_to_compare_with() -> None:
    assert true_labels_saved({"active": ACTIVE}) == {}


def test_the_report_files(tmp_path: Path) -> None:
    written = write_report(tmp_path, {"random": RANDOM, "active": ACTIVE}, title="toy")

    assert written == ["labels_saved.csv", "labels_saved.png", "compute.csv", "report.json"]
    assert csv_rows(tmp_path / "labels_saved.csv")[1] == {
        "strategy": "active",
        "labels": "50",
        "accuracy": "0.800000",
        "random_labels": "100.0",
        "labels_saved": "50.0",
    }
    assert csv_rows(tmp_path / "compute.csv")[0] == {
        "strategy": "random",
        "repeats": "2",
        "rounds": "8",
        "seconds": "4.00",
        "seconds_per_round": "0.500",
    }
    assert (tmp_path / "labels_saved.png").read_bytes().startswith(b"\x89PNG")
    final = json.loads((tmp_path / "report.json").read_text())["labels_saved_at_final"]
    assert final["active"]["labels"] == 100
    assert final["active"]["labels_saved"] is None
