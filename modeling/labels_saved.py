"""How many labels active learning saved against random sampling (no Django here).

Random sampling's learning curve is measured on the random-control items, which are a uniform
sample of the project: classifiers are trained on random subsets of them and scored on the
rest, fold by fold. A power law ``accuracy(n) = a - b * n**-c`` fitted to those scores is
inverted at the current model's accuracy on the same items to give the labels random sampling
would have needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modeling.classifiers import Classifier

# Below this many control labels the curve's points are too noisy to fit.
MIN_CONTROL_LABELS = 40
# The fit must explain at least this share of the variance of the mean curve.
MIN_R_SQUARED = 0.5
# Beyond this multiple of the largest subset trained on, the curve is not extrapolated.
MAX_EXTRAPOLATION = 10
# Power-law exponents tried; for each, a and b follow by least squares.
EXPONENTS = np.linspace(0.05, 2.0, 79)


@dataclass(frozen=True)
class LabelsSaved:
    """Labels saved, with a band; or, where the data cannot support a number, the reason."""

    estimate: int | None = None
    low: int | None = None
    high: int | None = None  # None with an estimate: the band reaches beyond the fitted range
    note: str = ""
    reason: str = ""
    # Random sampling's fitted learning curve, trusted up to `trusted_up_to` labels.
    curve: PowerLaw | None = None
    trusted_up_to: int = 0


@dataclass(frozen=True)
class PowerLaw:
    a: float
    b: float
    c: float
    r_squared: float

    def accuracy_at(self, labels: float) -> float:
        """The curve's accuracy after ``labels`` labels."""
        return float(self.a - self.b * labels ** (-self.c))

    def labels_for(self, accuracy: float) -> float:
        """Labels at which the curve reaches ``accuracy``; inf where it never does."""
        if accuracy >= self.a:
            return float("inf")
        return float((self.b / (self.a - accuracy)) ** (1.0 / self.c))


def labels_saved_estimate(
    X_control: npt.NDArray[np.floating],
    y_control: npt.NDArray[np.integer],
    current_correct: npt.NDArray[np.bool_],
    labels_used: int,
    make_classifier: Callable[[], Classifier],
    rng: np.random.Generator,
    *,
    n_sizes: int = 8,
    repeats: int = 2,
    folds: int = 5,
    n_boot: int = 200,
) -> LabelsSaved:
    """Labels random sampling would have needed for the current accuracy, minus ``labels_used``.

    The control items are dealt into ``folds`` folds (``repeats`` times, in new random orders).
    For each fold, classifiers are trained on random subsets of the other folds, at
    ``n_sizes`` sizes log-spaced from 10 to all of them, and predict the fold; so every
    control item is predicted at every size. The power law is fitted to the share of correct
    predictions per size and inverted at the current model's accuracy on the same items.

    Scoring both on the same items pairs them: an easy or hard draw of control items lifts or
    lowers both. The band is the 10th to 90th percentile over ``n_boot`` bootstrap resamples of
    the control items, each refitting the curve and re-measuring the current accuracy on the
    resample, so it covers the noise of both.

    Args:
        X_control: ``(n, dim)`` features of the labeled random-control items.
        y_control: ``(n,)`` their class indices.
        current_correct: ``(n,)`` whether the current model predicts each of them right.
        labels_used: labels the current model was trained on.
        make_classifier: builds a fresh, untrained classifier.
        rng: deals the folds, draws the subsets and the bootstrap resamples.
        n_sizes: number of subset sizes.
        repeats: rounds of fold dealing.
        folds: number of folds.
        n_boot: bootstrap resamples for the band.
    """
    n = len(y_control)
    if n < MIN_CONTROL_LABELS:
        return LabelsSaved(reason=f"needs {MIN_CONTROL_LABELS} random-control labels, has {n}")
    current_correct = np.asarray(current_correct, dtype=bool)
    largest = n - int(np.ceil(n / folds))  # the training part of the smallest split
    sizes = np.unique(np.geomspace(10, largest, n_sizes).round().astype(np.int64))
    correct = np.zeros((repeats, len(sizes), n), dtype=bool)
    for r in range(repeats):
        fold_of = rng.permutation(n) % folds
        for fold in range(folds):
            test = np.flatnonzero(fold_of == fold)
            order = rng.permutation(np.flatnonzero(fold_of != fold))
            for s, size in enumerate(sizes):
                train = order[:size]
                model = make_classifier().fit(X_control[train], y_control[train])
                predicted = model.predict_proba(X_control[test]).argmax(axis=1)
                correct[r, s, test] = predicted == y_control[test]
    per_item = correct.mean(axis=0)  # (sizes, n): each item's share of right predictions

    curve = fit_power_law(sizes, per_item.mean(axis=1))
    if curve is None or curve.r_squared < MIN_R_SQUARED:
        return LabelsSaved(
            reason="random sampling's learning curve on the control items is too flat or "
            "noisy to fit yet"
        )
    current_accuracy = float(current_correct.mean())
    limit = MAX_EXTRAPOLATION * largest
    if labels_used > limit:
        return LabelsSaved(
            reason=f"random sampling's curve, measured on {n} control labels, cannot be "
            f"extrapolated as far as the {labels_used} labels used (only to {limit}); "
            "more random-control labels (a larger share) would allow an estimate",
            curve=curve,
            trusted_up_to=limit,
        )
    needed = curve.labels_for(current_accuracy)
    if needed > limit:
        return LabelsSaved(
            reason=f"random sampling would not reach {current_accuracy:.0%} within the fitted "
            f"curve (it levels off at {min(curve.a, 1.0):.0%}): at least {limit} labels",
            curve=curve,
            trusted_up_to=limit,
        )

    # Resampled items as counts per item: one matrix product gives every resample's means.
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)])
    boot_scores = counts @ per_item.T / n  # (n_boot, sizes)
    boot_current = counts @ current_correct / n  # (n_boot,)
    boot_needed = []
    for scores, accuracy in zip(boot_scores, boot_current, strict=True):
        refit = fit_power_law(sizes, scores)
        boot_needed.append(refit.labels_for(float(accuracy)) if refit else float("inf"))
    low, high = np.quantile(np.array(boot_needed), [0.1, 0.9])
    return LabelsSaved(
        estimate=round(needed) - labels_used,
        low=min(round(low), round(needed)) - labels_used,
        high=max(round(high), round(needed)) - labels_used if high <= limit else None,
        note=(
            f"random sampling's curve fitted as a - b*n^-c to classifiers trained on random "
            f"subsets of the control labels ({sizes[0]}-{sizes[-1]} of {n}, {folds}-fold, "
            f"{repeats} repeats), inverted at the current model's accuracy on the same items; "
            "band: 10th-90th percentile over bootstrap resamples of the control items"
        ),
        curve=curve,
        trusted_up_to=limit,
    )


def fit_power_law(
    sizes: npt.NDArray[np.integer], accuracies: npt.NDArray[np.floating]
) -> PowerLaw | None:
    """Least-squares fit of ``accuracy = a - b * n**-c`` with ``b > 0`` and ``a <= 1``.

    For each exponent in ``EXPONENTS`` the model is linear in ``a`` and ``b``; the exponent
    with the smallest squared error among the valid fits wins. None when no fit is rising.
    """
    y = np.asarray(accuracies, dtype=np.float64)
    powers = np.asarray(sizes, dtype=np.float64)[None, :] ** -EXPONENTS[:, None]  # (C, S)
    # Regress y on -powers with an intercept: b = -cov(p, y) / var(p), a = mean(y) + b mean(p).
    p_mean = powers.mean(axis=1, keepdims=True)
    centered = powers - p_mean
    b = -(centered @ (y - y.mean())) / np.maximum((centered**2).sum(axis=1), 1e-300)
    a = y.mean() + b * p_mean[:, 0]
    residuals = y[None, :] - (a[:, None] - b[:, None] * powers)
    sse = (residuals**2).sum(axis=1)
    sse[(b <= 0) | (a > 1.0)] = np.inf
    best = int(np.argmin(sse))
    if not np.isfinite(sse[best]):
        return None
    total = float(((y - y.mean()) ** 2).sum())
    r_squared = 1.0 - float(sse[best]) / total if total > 0 else 0.0
    c = float(EXPONENTS[best])
    return PowerLaw(a=float(a[best]), b=float(b[best]), c=c, r_squared=r_squared)


def labels_to_reach(
    sizes: npt.NDArray[np.integer] | list[int],
    accuracies: npt.NDArray[np.floating] | list[float],
    target: float,
) -> float | None:
    """Labels at which a measured learning curve first reaches ``target``, or None if never.

    Between the last grid point below the target and the first at or above it the curve is
    taken as a straight line; a curve that starts at or above the target needs its first size.
    """
    sizes_ = np.asarray(sizes, dtype=np.float64)
    accuracies_ = np.asarray(accuracies, dtype=np.float64)
    reached = np.flatnonzero(accuracies_ >= target)
    if len(reached) == 0:
        return None
    i = int(reached[0])
    if i == 0:
        return float(sizes_[0])
    x0, x1, y0, y1 = sizes_[i - 1], sizes_[i], accuracies_[i - 1], accuracies_[i]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))
