"""How many labels active learning saved against random sampling (no Django here).

Random sampling's learning curve is measured on the random-control items, which are a uniform
sample of the project: classifiers are trained on random subsets of them and scored on the
rest. A power law ``accuracy(n) = a - b * n**-c`` fitted to those scores is inverted at the
current model's accuracy to give the labels random sampling would have needed.
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
    current_accuracy: float,
    labels_used: int,
    make_classifier: Callable[[], Classifier],
    rng: np.random.Generator,
    *,
    n_sizes: int = 8,
    repeats: int = 3,
    n_boot: int = 200,
) -> LabelsSaved:
    """Labels random sampling would have needed for ``current_accuracy``, minus ``labels_used``.

    For each of ``repeats`` random orders of the control items, classifiers are trained on the
    first ``n`` items for ``n_sizes`` sizes log-spaced from 10 to 80% of the set, and scored on
    the last 20%. The power law is fitted to the mean score per size. The band is the 10th to
    90th percentile over ``n_boot`` refits, each on repeats resampled with replacement per size.

    Args:
        X_control: ``(n, dim)`` features of the labeled random-control items.
        y_control: ``(n,)`` their class indices.
        current_accuracy: the current model's accuracy on the control items.
        labels_used: labels the current model was trained on.
        make_classifier: builds a fresh, untrained classifier.
        rng: draws the subsets and the bootstrap resamples.
        n_sizes: number of subset sizes.
        repeats: random orders per size.
        n_boot: bootstrap refits for the band.
    """
    n = len(y_control)
    if n < MIN_CONTROL_LABELS:
        return LabelsSaved(reason=f"needs {MIN_CONTROL_LABELS} random-control labels, has {n}")
    largest = int(0.8 * n)
    sizes = np.unique(np.geomspace(10, largest, n_sizes).round().astype(np.int64))
    scores = np.empty((repeats, len(sizes)))
    for r in range(repeats):
        order = rng.permutation(n)
        test = order[largest:]
        for s, size in enumerate(sizes):
            train = order[:size]
            model = make_classifier().fit(X_control[train], y_control[train])
            predicted = model.predict_proba(X_control[test]).argmax(axis=1)
            scores[r, s] = np.mean(predicted == y_control[test])

    curve = fit_power_law(sizes, scores.mean(axis=0))
    if curve is None or curve.r_squared < MIN_R_SQUARED:
        return LabelsSaved(
            reason="random sampling's learning curve on the control items is too flat or "
            "noisy to fit yet"
        )
    limit = MAX_EXTRAPOLATION * largest
    needed = curve.labels_for(current_accuracy)
    if needed > limit:
        return LabelsSaved(
            reason=f"random sampling would not reach {current_accuracy:.0%} within the fitted "
            f"curve (it levels off at {min(curve.a, 1.0):.0%}): at least {limit} labels",
            curve=curve,
            trusted_up_to=limit,
        )

    picks = rng.integers(0, repeats, size=(n_boot, repeats, len(sizes)))
    resampled = np.take_along_axis(scores[None, :, :].repeat(n_boot, axis=0), picks, axis=1)
    boot_needed = []
    for mean_scores in resampled.mean(axis=1):
        refit = fit_power_law(sizes, mean_scores)
        boot_needed.append(refit.labels_for(current_accuracy) if refit else float("inf"))
    low, high = np.quantile(np.array(boot_needed), [0.1, 0.9])
    return LabelsSaved(
        estimate=round(needed) - labels_used,
        low=round(low) - labels_used,
        high=round(high) - labels_used if high <= limit else None,
        note=(
            f"random sampling's curve fitted as a - b*n^-c to classifiers trained on random "
            f"subsets ({sizes[0]}-{sizes[-1]} of {n} control labels, {repeats} repeats); "
            "band: 10th-90th percentile over bootstrap refits (the curve's uncertainty only)"
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
