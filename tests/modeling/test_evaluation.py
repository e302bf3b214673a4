"""Quality reports and bootstrap intervals, fed literal labels."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from modeling.core.evaluation import (
    Metric,
    accuracy,
    bootstrap_ci,
    classification_report,
    confidence_for_precision,
    macro_f1,
    multi_label_macro_f1,
    multi_label_report,
    wilson_lower_bound,
)

Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0])


def test_the_report_counts_each_class() -> None:
    report = classification_report(Y_TRUE, Y_PRED, 3)

    assert report.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.precision.tolist() == pytest.approx([1 / 2, 2 / 3, 1])
    assert report.recall.tolist() == pytest.approx([1 / 2, 1, 1 / 2])
    assert report.support.tolist() == [2, 2, 2]
    # F1 per class: 1/2, 4/5, 2/3.
    assert report.macro_f1 == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)


def test_a_class_never_predicted_has_no_precision_and_scores_zero_f1() -> None:
    report = classification_report(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]), 2)

    assert np.isnan(report.precision[1])
    assert report.recall.tolist() == [1.0, 0.0]
    # Class 0: F1 = 2*2 / (2*2 + 2) = 2/3; class 1 counts with F1 = 0.
    assert report.macro_f1 == pytest.approx((2 / 3 + 0) / 2)


def test_a_class_absent_from_both_is_left_out_of_macro_f1() -> None:
    report = classification_report(np.array([0, 1]), np.array([0, 1]), 3)

    assert report.macro_f1 == 1.0
    assert report.support.tolist() == [1, 1, 0]
    assert np.isnan(report.precision[2])
    assert np.isnan(report.recall[2])
    assert report.confusion.shape == (3, 3)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "n_classes", "expected"),
    [
        ([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], 3, 59 / 90),  # every class seen
        ([0, 1], [0, 1], 3, 1.0),  # class 2 neither given nor predicted: left out
        ([0, 0, 1], [0, 2, 1], 4, 5 / 9),  # class 2 predicted but never given: F1 0
        ([2, 2, 2, 0], [2, 2, 0, 0], 5, 11 / 15),  # classes 1, 3 and 4 left out
    ],
)
def test_macro_f1_keeps_the_values_versions_stored_before(
    y_true: list[int], y_pred: list[int], n_classes: int, expected: float
) -> None:
    """The hand-written values from before macro-F1 had one implementation.

    scikit-learn agrees once told to leave unseen classes out (``zero_division=np.nan``); the
    simulation's old call (``zero_division=0``) counted them as 0 and gave 2/3, 5/12 and 22/75
    for the last three.
    """
    truth, guess = np.array(y_true), np.array(y_pred)
    labels = np.arange(n_classes)

    assert macro_f1(truth, guess, n_classes) == pytest.approx(expected, rel=1e-12)
    assert classification_report(truth, guess, n_classes).macro_f1 == macro_f1(
        truth, guess, n_classes
    )
    assert f1_score(
        truth, guess, labels=labels, average="macro", zero_division=np.nan
    ) == pytest.approx(expected, rel=1e-12)


def test_multi_label_macro_f1_keeps_its_values_too() -> None:
    # Label 0: F1 1; label 1 nobody gave or predicted: left out; label 2 predicted once: F1 0.
    y_true = np.array([[1, 0, 0], [0, 0, 0]])
    y_pred = np.array([[1, 0, 1], [0, 0, 0]])

    assert multi_label_macro_f1(y_true, y_pred) == 0.5
    assert multi_label_report(y_true, y_pred).macro_f1 == 0.5


def test_the_same_seed_gives_the_same_interval() -> None:
    first = bootstrap_ci(Y_TRUE, Y_PRED, accuracy, np.random.default_rng(7))
    second = bootstrap_ci(Y_TRUE, Y_PRED, accuracy, np.random.default_rng(7))

    assert first == second
    low, high = first
    assert 0 <= low <= accuracy(Y_TRUE, Y_PRED) <= high <= 1
    assert low < high


def test_a_perfect_model_has_a_point_interval() -> None:
    assert bootstrap_ci(Y_TRUE, Y_TRUE, accuracy, np.random.default_rng(0)) == (1.0, 1.0)


def test_more_items_and_lower_coverage_narrow_the_interval() -> None:
    rng = np.random.default_rng(0)
    few = bootstrap_ci(Y_TRUE, Y_PRED, accuracy, rng)
    many = bootstrap_ci(np.tile(Y_TRUE, 20), np.tile(Y_PRED, 20), accuracy, rng)
    half = bootstrap_ci(Y_TRUE, Y_PRED, accuracy, rng, level=0.5)

    assert many[1] - many[0] < few[1] - few[0]
    assert half[1] - half[0] < few[1] - few[0]
    assert many[0] <= 4 / 6 <= many[1]


def test_any_metric_can_be_bootstrapped() -> None:
    f1 = partial(macro_f1, n_classes=3)

    low, high = bootstrap_ci(Y_TRUE, Y_PRED, f1, np.random.default_rng(1), n_boot=200)

    assert 0 <= low <= f1(Y_TRUE, Y_PRED) <= high <= 1


@pytest.mark.parametrize("metric", [accuracy, partial(macro_f1, n_classes=4)])
def test_the_interval_is_scipys_percentile_bootstrap(metric: Metric) -> None:
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 4, 200))

    ours = bootstrap_ci(y_true, y_pred, metric, np.random.default_rng(5))
    theirs = stats.bootstrap(
        (y_true, y_pred),
        metric,
        paired=True,
        vectorized=False,
        n_resamples=1000,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(5),
    ).confidence_interval

    # Both draw the same resamples from one seed, so today they agree to rounding. The
    # tolerance, twice the largest gap between different seeds at 200 items (0.01), keeps
    # the test about the method rather than scipy's order of draws.
    assert ours == pytest.approx((theirs.low, theirs.high), abs=0.02)


def test_no_items_have_no_interval() -> None:
    with pytest.raises(ValueError, match="at least one item"):
        bootstrap_ci(
            np.array([], dtype=int), np.array([], dtype=int), accuracy, np.random.default_rng(0)
        )


def test_multi_label_quality_counts_whole_sets_and_each_label() -> None:
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    y_pred = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]])

    report = multi_label_report(y_true, y_pred)

    assert report.subset_accuracy == 0.25  # only the first item's set is exactly right
    # Label 0: tp 2 of 2 both ways; label 1: tp 1, predicted 1, given 2; label 2: tp 1 of 2, 2.
    assert report.precision.tolist() == [1.0, 1.0, 0.5]
    assert report.recall.tolist() == [1.0, 0.5, 0.5]
    assert report.support.tolist() == [2, 2, 2]
    assert report.micro_f1 == pytest.approx(2 * 4 / (5 + 6))
    assert report.macro_f1 == pytest.approx((1.0 + 2 / 3 + 0.5) / 3)


def test_a_label_nobody_gave_or_predicted_is_left_out_of_macro_f1() -> None:
    y_true = np.array([[1, 0], [1, 0]])
    y_pred = np.array([[1, 0], [0, 0]])

    report = multi_label_report(y_true, y_pred)

    assert np.isnan(report.precision[1])
    assert np.isnan(report.recall[1])
    assert report.macro_f1 == pytest.approx(2 / 3)


def test_suggestions_are_shown_from_the_lowest_confidence_that_keeps_them_usually_right() -> None:
    confidence = np.array([0.6, 0.95, 0.8, 0.9, 0.55, 0.85])
    correct = np.array([False, True, False, True, True, True])
    # Surest first: right, right, right, wrong (3 of 4), wrong (3 of 5), right (4 of 6).

    assert confidence_for_precision(confidence, correct, target=0.75, min_items=2) == 0.8
    assert confidence_for_precision(confidence, correct, target=1.0, min_items=2) == 0.85
    assert confidence_for_precision(confidence, correct, target=0.75, min_items=5) is None
    assert (
        confidence_for_precision(np.array([]), np.array([], bool), target=0.8, min_items=1) is None
    )


def test_a_lower_bound_asks_more_items_before_a_confidence_qualifies() -> None:
    # 9 right of 10 above 0.6, then a wrong one: the share alone qualifies 0.6 for 80%; the
    # Wilson lower bound (z = 1.64) over 10 items does not reach 80%, so nothing qualifies.
    confidence = np.linspace(0.95, 0.6, 10)
    correct = np.array([True] * 9 + [False])
    assert confidence_for_precision(confidence, correct, target=0.8, min_items=5) == 0.6
    assert confidence_for_precision(confidence, correct, target=0.8, min_items=5, z=1.64) is None
    many = np.linspace(0.99, 0.6, 200)
    assert confidence_for_precision(
        many, np.arange(200) % 10 != 9, target=0.8, min_items=5, z=1.64
    ) == pytest.approx(0.6)


def test_the_wilson_bound_lies_below_the_share_and_is_the_share_at_z_zero() -> None:
    hits, counts = np.array([9, 90]), np.array([10, 100])
    assert wilson_lower_bound(hits, counts, 0.0).tolist() == [0.9, 0.9]
    low = wilson_lower_bound(hits, counts, 1.64)
    assert 0.6 < low[0] < low[1] < 0.9
