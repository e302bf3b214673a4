"""Labels saved against random sampling, on learners whose learning curve is known."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from modeling.core.classifiers import Classifier
from modeling.core.labels_saved import (
    SIGMOID,
    STRETCHED,
    LearningCurve,
    Shape,
    fit_learning_curve,
    labels_saved_estimate,
)


def true_curve(n: int) -> float:
    """The learner's accuracy after n labels: 0.9 - 0.8 / sqrt(n), so 64 labels give 0.8."""
    return 0.9 - 0.8 * n**-0.5


def slow_start(n: int) -> float:
    """A learner for many classes: 0.95 - 0.9 / (1 + (n / 300)**1.4), 50% at 300 labels.

    Its first labels mostly meet classes not seen yet, so it rises slowly, then steeply."""
    return 0.95 - 0.9 / (1.0 + (n / 300) ** 1.4)


def levels_off(n: int) -> float:
    """A learner near its best after a few dozen labels: 0.88 - 0.5 * exp(1 - sqrt(n))."""
    return 0.88 - 0.5 * np.exp(-(np.sqrt(n) - 1.0))


class CurveLearner(Classifier):
    """Trained on n items, it is right on exactly the items easier than ``curve(n)``.

    Column 0 of X holds the item's true class (0 or 1), column 1 its difficulty in [0, 1).
    """

    def __init__(self, curve=true_curve) -> None:  # type: ignore[no-untyped-def]
        super().__init__(2)
        self.curve = curve
        self.accuracy = 0.0

    def fit(self, X: npt.NDArray[np.floating], y: npt.NDArray[np.integer]) -> CurveLearner:
        self.accuracy = self.curve(len(y))
        return self

    def predict_proba(self, X: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        truth = X[:, 0].astype(np.intp)
        predicted = np.where(X[:, 1] < self.accuracy, truth, 1 - truth)
        return np.eye(2)[predicted]


def control_items(n: int, seed: int = 0) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return np.column_stack([y, rng.random(n)]), y


def right_on_share(n: int, share: float) -> npt.NDArray[np.bool_]:
    """A current model that is right on the first `share` of n control items."""
    return np.arange(n) < round(share * n)


def test_the_fit_recovers_a_power_law_from_exact_points() -> None:
    sizes = np.array([10, 20, 40, 80, 160, 320])
    curve = fit_learning_curve(sizes, np.array([true_curve(n) for n in sizes]))

    assert curve is not None
    assert curve.shape == Shape(STRETCHED, 0.0)
    assert (curve.a, curve.b, curve.scale) == pytest.approx((0.9, 0.8, 0.5), abs=0.01)
    assert curve.labels_for(0.8) == pytest.approx(64, rel=0.02)
    assert curve.labels_for(0.95) == float("inf")


def test_the_fit_recognises_a_curve_that_levels_off() -> None:
    # Exponential in sqrt(n) (shape d = 1/2): 0.86 at 20 labels already, never past 0.88.
    sizes = np.array([10, 20, 40, 80, 160, 320])
    curve = fit_learning_curve(sizes, np.array([levels_off(n) for n in sizes]))

    assert curve is not None
    assert curve.shape == Shape(STRETCHED, 0.5)
    assert curve.accuracy_at(5000) == pytest.approx(0.88, abs=0.002)
    assert curve.labels_for(0.87) == pytest.approx(24, rel=0.05)
    assert curve.labels_for(0.89) == float("inf")


def test_the_fit_follows_a_slow_start_into_its_steep_middle() -> None:
    # Measured up to 400 labels, the curve is asked where it reaches 80%: at 946 labels.
    sizes = np.array([10, 17, 29, 49, 82, 139, 236, 400])
    curve = fit_learning_curve(sizes, np.array([slow_start(n) for n in sizes]))

    assert curve is not None
    assert curve.shape == Shape(SIGMOID, 1.4)
    assert curve.labels_for(0.8) == pytest.approx(946, rel=0.05)


def test_a_fitted_curve_survives_its_trip_through_json() -> None:
    curve = LearningCurve(a=0.9, b=0.8, scale=300.0, shape=Shape(SIGMOID, 1.4))

    assert LearningCurve.from_json(curve.as_json()) == curve
    # Versions fitted before the sigmoids stored a stretched exponential as a, b, c[, d].
    old = LearningCurve.from_json({"a": 0.9, "b": 0.8, "c": 0.5})
    assert old == LearningCurve(a=0.9, b=0.8, scale=0.5, shape=Shape(STRETCHED, 0.0))
    assert old.accuracy_at(64) == pytest.approx(true_curve(64))


def test_a_falling_curve_has_no_fit() -> None:
    assert fit_learning_curve(np.array([10, 20, 40]), np.array([0.9, 0.8, 0.7])) is None


def test_the_estimate_and_its_band_hold_the_labels_random_sampling_needs() -> None:
    estimates, covered = [], 0
    for seed in range(20):
        X, y = control_items(1000, seed)
        # An actively trained model as accurate as 64 random labels, scored on the same items.
        current_correct = X[:, 1] < true_curve(64)

        saved = labels_saved_estimate(
            X, y, current_correct, 30, CurveLearner, np.random.default_rng(seed)
        )

        # Random sampling needs 64 labels; active learning used 30, so 34 were saved.
        assert saved.estimate is not None
        assert saved.low is not None
        assert saved.high is not None
        assert saved.low <= saved.estimate <= saved.high
        assert saved.estimate == pytest.approx(34, abs=15)
        assert "of 1000, 5-fold" in saved.note
        assert saved.reason == ""
        # The fitted curve itself comes along, for the report's chart.
        assert saved.curve is not None
        assert saved.curve.accuracy_at(64) == pytest.approx(current_correct.mean(), abs=0.02)
        assert saved.trusted_up_to == 4000
        estimates.append(saved.estimate)
        covered += saved.low <= 34 <= saved.high
    # Unbiased, and the 10th-90th percentile band holds the truth about 80% of the time.
    assert np.mean(estimates) == pytest.approx(34, abs=3)
    assert 13 <= covered <= 20


def test_a_slow_starting_curve_is_not_mistaken_for_a_slow_one() -> None:
    # A curve that must rise fastest at its start would bend too early through these points
    # and put the 1,000 labels random sampling needs far beyond 1,000.
    X, y = control_items(500)
    current_correct = X[:, 1] < slow_start(1000)

    saved = labels_saved_estimate(
        X, y, current_correct, 400, lambda: CurveLearner(slow_start), np.random.default_rng(0)
    )

    # 600 saved; the band stays open upward, as a curve levelling off soon after the measured
    # sizes fits the points too.
    assert saved.estimate is not None
    assert saved.low is not None
    assert saved.low <= 600
    assert saved.high is None or saved.high >= 600
    assert saved.estimate == pytest.approx(600, abs=200)


def test_more_labels_than_random_would_need_count_as_negative_savings() -> None:
    X, y = control_items(1000)

    saved = labels_saved_estimate(
        X, y, right_on_share(1000, 0.8), 100, CurveLearner, np.random.default_rng(0)
    )

    assert saved.estimate is not None
    assert saved.estimate < 0


def test_too_few_control_labels_give_a_reason_instead_of_a_number() -> None:
    X, y = control_items(39)

    saved = labels_saved_estimate(
        X, y, right_on_share(39, 0.8), 30, CurveLearner, np.random.default_rng(0)
    )

    assert saved.estimate is None
    assert saved.reason == "needs 40 random-control labels, has 39"


def test_a_flat_curve_gives_a_reason_instead_of_a_number() -> None:
    X, y = control_items(200)

    saved = labels_saved_estimate(
        X,
        y,
        right_on_share(200, 0.8),
        30,
        lambda: CurveLearner(lambda n: 0.7),
        np.random.default_rng(0),
    )

    assert saved.estimate is None
    assert "too flat or noisy" in saved.reason


def test_a_rise_smaller_than_one_control_item_is_flat_not_a_lower_bound() -> None:
    X, y = control_items(50)

    # Random sampling misses one item of 50 below 20 labels; the model is right on all 50.
    saved = labels_saved_estimate(
        X,
        y,
        right_on_share(50, 1.0),
        6,
        lambda: CurveLearner(lambda n: 1.0 - 0.05 / n),
        np.random.default_rng(0),
    )

    assert (saved.estimate, saved.low, saved.at_least) == (None, None, False)
    assert "too flat or noisy" in saved.reason


def test_an_accuracy_beyond_the_curve_gives_a_lower_bound() -> None:
    X, y = control_items(1000)

    # Random sampling levels off at 90%; the current model is right on 95% of the items.
    saved = labels_saved_estimate(
        X, y, right_on_share(1000, 0.95), 30, CurveLearner, np.random.default_rng(0)
    )

    # Not within the 4000 labels the curve is trusted for: at least 4000 - 30 were saved.
    assert saved.at_least
    assert (saved.estimate, saved.low, saved.high) == (None, 3970, None)
    assert saved.reason == ""
    assert "trusted up to 4000 labels" in saved.note


def test_a_curve_that_levels_off_is_not_extrapolated_as_a_power_law() -> None:
    X, y = control_items(200)

    # Random sampling is near its best (88%) within the measured sizes; the current model is
    # right on 95%, which a power law through the early points would reach in time.
    saved = labels_saved_estimate(
        X,
        y,
        right_on_share(200, 0.95),
        100,
        lambda: CurveLearner(levels_off),
        np.random.default_rng(0),
    )

    assert saved.at_least
    assert saved.low == 800 - 100


def test_labels_used_beyond_the_trusted_range_still_count_when_random_needs_fewer() -> None:
    X, y = control_items(80, seed=1)

    # Random sampling reaches 80% at 64 labels, well within the 320 the curve is trusted for.
    saved = labels_saved_estimate(
        X, y, X[:, 1] < true_curve(64), 700, CurveLearner, np.random.default_rng(1)
    )

    assert saved.trusted_up_to == 320
    assert saved.estimate is not None
    assert saved.estimate == pytest.approx(64 - 700, abs=30)


def test_a_lower_bound_below_the_labels_used_gives_a_reason_instead_of_a_number() -> None:
    X, y = control_items(50)

    # Random sampling would need more than the 200 labels its curve is trusted for, but the
    # current model used 500: it may have saved labels or cost some.
    saved = labels_saved_estimate(
        X, y, right_on_share(50, 0.96), 500, CurveLearner, np.random.default_rng(0)
    )

    assert (saved.estimate, saved.low) == (None, None)
    assert saved.reason == (
        "cannot tell yet: random sampling would need more than the 200 labels its curve can "
        "be trusted for to reach 96%, against 500 used; more random-control labels would "
        "narrow that"
    )
