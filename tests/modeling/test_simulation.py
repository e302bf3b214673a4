"""Offline simulation: learning curves and their summary."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from modeling.core.classifiers import Classifier
from modeling.core.simulation import CurvePoint, run_simulation, summarize


def overlapping_blobs(n: int, seed: int):
    """Ten classes of unit vectors whose clusters overlap: the boundaries are what matter.

    Most items sit deep inside their class and teach a model little once a few are labeled,
    so picking the uncertain ones should pay off.
    """
    rng = np.random.default_rng(seed)
    n_classes, dim = 10, 24
    centers = rng.normal(size=(n_classes, dim))
    y = rng.integers(0, n_classes, n)
    X = centers[y] + 1.2 * rng.normal(size=(n, dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y, n_classes


def simulate_on_blobs(
    n: int, data_seed: int, pool: int, strategy: str, **options: Any
) -> list[CurvePoint]:
    """`run_simulation` over `overlapping_blobs(n)`: the first `pool` items to label, the rest
    the test set."""
    X, y, n_classes = overlapping_blobs(n, seed=data_seed)
    return run_simulation(X[:pool], y[:pool], X[pool:], y[pool:], n_classes, strategy, **options)


def test_a_curve_has_one_point_per_round_up_to_the_budget():
    curve = simulate_on_blobs(600, 0, 400, "margin", seed_size=20, batch_size=30, budget=100)

    assert [point.labels for point in curve] == [20, 50, 80, 100]
    assert all(0.0 <= point.accuracy <= 1.0 for point in curve)
    assert all(0.0 <= point.macro_f1 <= 1.0 for point in curve)
    assert all(point.seconds >= 0.0 for point in curve)


def test_the_same_seed_gives_the_same_curve():
    def accuracies(seed: int) -> list[float]:
        curve = simulate_on_blobs(600, 0, 400, "uncertain_diverse", budget=100, seed=seed)
        return [point.accuracy for point in curve]

    assert accuracies(3) == accuracies(3)


def test_the_default_strategy_learns_faster_than_random():
    curves: dict[str, list[list[CurvePoint]]] = {"random": [], "uncertain_diverse": []}
    for seed in range(3):
        for name in curves:
            curves[name].append(simulate_on_blobs(4000, seed, 3000, name, budget=300, seed=seed))

    summary = summarize(curves)

    # Across seed sets the gap measured 0.026 to 0.047; 0.01 leaves room without going blind.
    assert summary["uncertain_diverse"]["auc"] > summary["random"]["auc"] + 0.01


class Oracle(Classifier):
    """Reads each item's true class from its input, so its predictions are always right."""

    def fit(self, X: npt.NDArray[np.floating], y: npt.NDArray[np.integer]) -> Oracle:
        return self

    def predict_proba(self, X: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        return np.eye(self.n_classes)[np.asarray(X, dtype=np.intp)]


def test_a_class_missing_from_the_test_set_does_not_lower_macro_f1():
    X, y, n_classes = overlapping_blobs(300, seed=0)
    test = y[200:] != 9  # class 9 has no test items and is never predicted

    curve = run_simulation(
        X[:200],
        y[:200],
        X[200:][test],
        y[200:][test],
        n_classes,
        "random",
        budget=50,
        classifier_factory=Oracle,
        train_inputs=y[:200],
        test_inputs=y[200:][test],
    )

    # Counting class 9 as F1 = 0 would give 0.9.
    assert [point.macro_f1 for point in curve] == [1.0, 1.0]


def point(labels: int, accuracy: float) -> CurvePoint:
    return CurvePoint(labels=labels, accuracy=accuracy, macro_f1=accuracy, seconds=0.0)


def test_summary_averages_repeats_and_counts_labels_to_reach_random():
    curves = {
        "random": [
            [point(25, 0.4), point(125, 0.5), point(275, 0.6)],
            [point(25, 0.6), point(125, 0.7), point(275, 0.8)],
        ],
        "margin": [[point(25, 0.5), point(125, 0.7), point(275, 0.9)]],
        "kmeans": [[point(25, 0.3), point(125, 0.4), point(275, 0.5)]],
    }

    summary = summarize(curves)

    assert summary["random"]["auc"] == pytest.approx(0.6)
    assert summary["random"]["final_accuracy"] == pytest.approx(0.7)
    assert summary["random"]["accuracy_at"] == pytest.approx({"125": 0.6, "275": 0.7})
    assert summary["random"]["labels_to_random_final"] == 275
    assert summary["margin"]["labels_to_random_final"] == 125
    assert summary["kmeans"]["labels_to_random_final"] is None


def test_summary_without_random_cannot_say_how_many_labels_were_saved():
    summary = summarize({"margin": [[point(25, 0.5), point(50, 0.7)]]})

    assert summary["margin"]["labels_to_random_final"] is None
    assert summary["margin"]["accuracy_at"] == {}


def test_from_the_round_a_fine_tune_adapts_the_space_the_head_works_in_it():
    rng = np.random.default_rng(0)
    y = rng.permutation(np.repeat([0, 1], 150))
    noise = rng.normal(size=(300, 8)).astype(np.float32)  # the encoder as it came: no signal
    separable = noise.copy()
    separable[:, 0] = np.where(y == 1, 5.0, -5.0)  # what the fine-tune learned to see
    calls: list[int] = []

    def fine_tune_at_40(labeled, labeled_y, n_classes):
        calls.append(len(labeled))
        if len(labeled) != 40:
            return None
        return separable[:200], separable[200:]

    curve = run_simulation(
        noise[:200], y[:200], noise[200:], y[200:], 2, "random",
        seed_size=20, batch_size=20, budget=80, adaptation=fine_tune_at_40,
    )  # fmt: skip

    assert calls == [20, 40, 60, 80]
    by_labels = {point.labels: point.accuracy for point in curve}
    assert by_labels[20] < 0.8
    assert by_labels[40] == by_labels[60] == by_labels[80] == 1.0
