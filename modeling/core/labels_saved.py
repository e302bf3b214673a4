"""How many labels active learning saved against random sampling (no Django here).

Random sampling's learning curve is measured on the random-control items, which are a uniform
sample of the project: classifiers are trained on random subsets of them and scored on the
rest, fold by fold. A learning curve fitted to those scores is inverted at the current model's
accuracy on the same items to give the labels random sampling would have needed.

The curve's shape beyond the measured sizes is the weak point, so the fit ranges over two
families of shapes, ``accuracy(n) = a - b * g(n)``:

- stretched exponentials, ``g(n) = exp(-c * (n**d - 1) / d)``: ``d = 0`` is the power law
  ``n**-c``, which keeps rising; larger ``d`` levels off sooner (``d = 1`` is exponential), as
  classifiers on frozen embeddings often do;
- sigmoids in log n (the Morgan-Mercer-Flodin curve), ``g(n) = 1 / (1 + (n / m)**s)``: a slow
  start, a steep middle around ``m`` labels, and a power-law tail. With many classes the first
  labels mostly meet classes not seen yet, and random sampling's curve looks like this; a
  curve forced to rise fastest at its start would rise too slowly past the measured sizes and
  overstate the labels random sampling needs (offline on Banking77, 77 classes: 1,600 labels
  for a model 1,000 random labels made, against 1,180 with the sigmoids).

Every shape is fitted to every bootstrap resample and weighted by how well it fits, so the
band carries the doubt about the shape as well as the noise of the control items.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from modeling.core.classifiers import Classifier

# Below this many control labels the curve's points are too noisy to fit.
MIN_CONTROL_LABELS = 40
# The fit must explain at least this share of the variance of the mean curve.
MIN_R_SQUARED = 0.5
# Beyond this multiple of the largest subset trained on, the curve is not extrapolated. (At 10,
# a live Banking77 run with 306 controls claimed random sampling needed at least 2,167 labels
# where it needed 1,936.)
MAX_EXTRAPOLATION = 5
# The two families of shapes (see the module docstring) and the grid of each one's scale: the
# decay rate c of the stretched exponential, the midpoint m (labels) of the sigmoid. For every
# shape and scale, a and b follow by least squares.
STRETCHED = "stretched"
SIGMOID = "sigmoid"
SCALES = {STRETCHED: np.geomspace(0.02, 4.0, 120), SIGMOID: np.geomspace(1.0, 30000.0, 120)}
# The band: these percentiles of the bootstrap resamples' labels needed.
BAND = (10, 90)


@dataclass(frozen=True)
class Shape:
    """One shape of learning curve: its family and the family's shape parameter.

    ``stretched``, ``d`` in [0, 1]: the rising part is ``exp(-c * (n**d - 1) / d)`` for a
    decay rate ``c`` (``d = 0``: the power law ``n**-c``). ``sigmoid``, ``s`` > 0: it is
    ``1 / (1 + (n / m)**s)`` for a midpoint of ``m`` labels.
    """

    family: str
    value: float

    def rising(self, labels: npt.ArrayLike, scale: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The curve's rising part at ``labels`` for the scale ``scale`` (broadcast)."""
        n, k = np.broadcast_arrays(np.asarray(labels, np.float64), np.asarray(scale, np.float64))
        if self.family == SIGMOID:
            with np.errstate(over="ignore"):
                return 1.0 / (1.0 + (n / k) ** self.value)
        return np.exp(-k * _stretched_log(n, self.value))

    def labels_for(self, ratio: npt.ArrayLike, scale: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Inverse of :meth:`rising`: the labels at which it has fallen to ``ratio`` in (0, 1]."""
        r, k = np.broadcast_arrays(np.asarray(ratio, np.float64), np.asarray(scale, np.float64))
        with np.errstate(over="ignore", divide="ignore"):  # beyond any float: never, in practice
            if self.family == SIGMOID:
                return k * (1.0 / r - 1.0) ** (1.0 / self.value)
            stretched = -np.log(r) / k  # (n**d - 1) / d
            if self.value == 0:
                return np.exp(stretched)
            return (1.0 + self.value * stretched) ** (1.0 / self.value)


# Every shape tried. The stretched exponentials run from the power law (d = 0) to curves that
# level off; the sigmoids start slowly and then rise, as with many classes, where the first
# labels mostly meet classes not seen yet, and end in a power law.
SHAPES = (
    *(Shape(STRETCHED, d) for d in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)),
    *(Shape(SIGMOID, s) for s in (0.7, 1.0, 1.4, 2.0, 3.0)),
)


@dataclass(frozen=True)
class LearningCurve:
    """``accuracy(n) = a - b * g(n)`` with ``g`` the rising part of ``shape`` at ``scale``."""

    a: float
    b: float
    scale: float
    shape: Shape = Shape(STRETCHED, 0.0)
    r_squared: float = float("nan")

    def accuracy_at(self, labels: float) -> float:
        """The curve's accuracy after ``labels`` labels."""
        return float(self.a - self.b * self.shape.rising(labels, self.scale))

    def labels_for(self, accuracy: float) -> float:
        """Labels at which the curve reaches ``accuracy``; inf where it never does."""
        return float(_labels_for(self.shape, self.a, self.b, self.scale, accuracy))

    def as_json(self) -> dict[str, float | str]:
        """The curve as a JSON object, read back by :meth:`from_json`."""
        return {
            "a": self.a,
            "b": self.b,
            "scale": self.scale,
            "family": self.shape.family,
            "shape": self.shape.value,
        }

    @classmethod
    def from_json(cls, fitted: Mapping[str, Any]) -> LearningCurve:
        """The curve :meth:`as_json` wrote; also the older ``a, b, c[, d]`` stretched form."""
        if "family" not in fitted:
            shape = Shape(STRETCHED, float(fitted.get("d", 0.0)))
            return cls(float(fitted["a"]), float(fitted["b"]), float(fitted["c"]), shape)
        shape = Shape(str(fitted["family"]), float(fitted["shape"]))
        return cls(float(fitted["a"]), float(fitted["b"]), float(fitted["scale"]), shape)


@dataclass(frozen=True)
class LabelsSaved:
    """Labels saved, with a band; or, where the data cannot support a number, the reason.

    With ``at_least`` set, random sampling would need more labels than its curve can be
    trusted for: ``low`` is then a lower bound, ``estimate`` and ``high`` are None.
    """

    estimate: int | None = None
    low: int | None = None
    high: int | None = None  # None with a `low`: the band reaches beyond the trusted range
    at_least: bool = False
    note: str = ""
    reason: str = ""
    # Random sampling's fitted learning curve, trusted up to `trusted_up_to` labels.
    curve: LearningCurve | None = None
    trusted_up_to: int = 0


@dataclass(frozen=True)
class RandomCurvePoints:
    """Random sampling's measured learning curve on the control items, item by item.

    ``per_item[s, i]``: the share of classifiers trained on ``sizes[s]`` random control items
    (not item ``i``) that predict item ``i`` right. The expensive part of an estimate, so a
    worker may keep it while the control items barely change.
    """

    sizes: npt.NDArray[np.int64]
    per_item: npt.NDArray[np.float64]
    folds: int
    repeats: int

    @property
    def n(self) -> int:
        """The number of control items measured."""
        return int(self.per_item.shape[1])


def measure_random_curve(
    X_control: npt.NDArray[np.floating],
    y_control: npt.NDArray[np.integer],
    make_classifier: Callable[[], Classifier],
    rng: np.random.Generator,
    *,
    n_sizes: int = 8,
    repeats: int = 2,
    folds: int = 5,
) -> RandomCurvePoints:
    """Train on random subsets of the control items and score each item at every size.

    The items are dealt into ``folds`` folds (``repeats`` times, in new random orders). For
    each fold, classifiers are trained on random subsets of the other folds, at ``n_sizes``
    sizes log-spaced from 10 to all of them, and predict the fold; so every control item is
    predicted at every size, by classifiers that never saw it.
    """
    n = len(y_control)
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
    return RandomCurvePoints(sizes, correct.mean(axis=0), folds, repeats)


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

    Random sampling's curve is measured on the control items (:func:`measure_random_curve`)
    and inverted at the current model's accuracy on the same items
    (:func:`labels_saved_from_points`).

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
    if len(y_control) < MIN_CONTROL_LABELS:
        return too_few_controls(len(y_control))
    points = measure_random_curve(
        X_control, y_control, make_classifier, rng, n_sizes=n_sizes, repeats=repeats, folds=folds
    )
    return labels_saved_from_points(points, current_correct, labels_used, rng, n_boot=n_boot)


def too_few_controls(n: int) -> LabelsSaved:
    """The answer while the control items are too few to measure a curve on."""
    return LabelsSaved(reason=f"needs {MIN_CONTROL_LABELS} random-control labels, has {n}")


def labels_saved_from_points(
    points: RandomCurvePoints,
    current_correct: npt.NDArray[np.bool_],
    labels_used: int,
    rng: np.random.Generator,
    *,
    n_boot: int = 200,
) -> LabelsSaved:
    """Invert random sampling's measured curve at the current model's accuracy on its items.

    A learning curve (see the module docstring) is fitted to the share of right predictions
    per size. Scoring the current model on the same items pairs the two: an easy or hard draw
    of control items lifts or lowers both. ``n_boot`` bootstrap resamples of the items each
    refit the curve in every shape ``SHAPES`` (weighted by fit, see
    :func:`_needed_per_shape`) and re-measure the current accuracy on the resample; the band
    is the 10th to 90th percentile of their labels needed, so it covers the noise of both and
    the doubt about how the curve goes on, and the estimate is their median. A band beyond
    the trusted range (``MAX_EXTRAPOLATION`` times the largest subset) stays open upward.
    Where the median lies beyond it, the result is a lower bound, at least the band's low
    end; or, where that bound is not above the labels used, a reason.

    Args:
        points: random sampling's curve measured on ``n`` control items.
        current_correct: ``(n,)`` whether the current model predicts each of them right.
        labels_used: labels the current model was trained on.
        rng: draws the bootstrap resamples.
        n_boot: bootstrap resamples for the band.
    """
    sizes, per_item, n = points.sizes, points.per_item, points.n
    current_correct = np.asarray(current_correct, dtype=bool)
    measured = per_item.mean(axis=1)
    curve = fit_learning_curve(sizes, measured)
    # A rise of one control item's worth or less is no curve at all, however well it fits.
    rise = float(measured.max() - measured[0])
    if curve is None or curve.r_squared < MIN_R_SQUARED or round(rise * n, 6) <= 1:
        return LabelsSaved(
            reason="random sampling's learning curve on the control items is too flat or "
            "noisy to fit yet"
        )
    limit = int(MAX_EXTRAPOLATION * sizes[-1])

    # Resampled items as counts per item: one matrix product gives every resample's means.
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)])
    boot_scores = counts @ per_item.T / n  # (n_boot, sizes)
    boot_current = counts @ current_correct / n  # (n_boot,)
    needed, weights = _needed_per_shape(sizes, boot_scores, boot_current)
    low, middle, high = _weighted_quantiles(needed, weights, [BAND[0] / 100, 0.5, BAND[1] / 100])
    current_accuracy = float(current_correct.mean())
    note = (
        f"random sampling's learning curve (power laws, curves that level off and sigmoids in "
        f"log n, weighted by fit) measured with classifiers trained on random subsets of the "
        f"control labels ({sizes[0]}-{sizes[-1]} of {n}, {points.folds}-fold, "
        f"{points.repeats} repeats) and inverted at the current model's {current_accuracy:.0%} "
        f"on the same items; band: "
        f"{BAND[0]}th-{BAND[1]}th percentile over bootstrap resamples of the control items, "
        f"each refitting the curve's shape; trusted up to {limit} labels"
    )
    if middle > limit:
        # Random sampling needs more labels than its curve can be trusted for: a lower bound.
        at_least = round(min(low, limit))
        if at_least <= labels_used:
            span = f"from {at_least} to " if at_least < limit else ""
            return LabelsSaved(
                reason=f"cannot tell yet: random sampling would need {span}more than the "
                f"{limit} labels its curve can be trusted for to reach {current_accuracy:.0%}, "
                f"against {labels_used} used; more random-control labels would narrow that",
                curve=curve,
                trusted_up_to=limit,
            )
        return LabelsSaved(
            low=at_least - labels_used,
            at_least=True,
            note=note,
            curve=curve,
            trusted_up_to=limit,
        )
    return LabelsSaved(
        estimate=round(middle) - labels_used,
        low=round(low) - labels_used,
        high=round(high) - labels_used if high <= limit else None,
        note=note,
        curve=curve,
        trusted_up_to=limit,
    )


def fit_learning_curve(
    sizes: npt.NDArray[np.integer], accuracies: npt.NDArray[np.floating]
) -> LearningCurve | None:
    """Least-squares fit of ``a - b * g(n)`` with ``b > 0``, ``a <= 1``, over all ``SHAPES``.

    For each shape and scale of its grid (``SCALES``) the curve is linear in ``a`` and ``b``;
    the pair with the smallest squared error among the valid fits wins. None when no fit is
    rising.
    """
    y = np.asarray(accuracies, dtype=np.float64)
    a, b, sse = _fit_grid(sizes, y[None, :])
    shape, scale = np.unravel_index(np.argmin(sse[0]), sse.shape[1:])
    if not np.isfinite(sse[0, shape, scale]):
        return None
    curve = LearningCurve(
        a=float(a[0, shape, scale]),
        b=float(b[0, shape, scale]),
        scale=float(SCALES[SHAPES[shape].family][scale]),
        shape=SHAPES[shape],
    )
    total = float(((y - y.mean()) ** 2).sum())
    residual = float(((y - [curve.accuracy_at(s) for s in sizes]) ** 2).sum())
    r_squared = 1.0 - residual / total if total > 0 else 0.0
    return replace(curve, r_squared=r_squared)


def _fit_grid(
    sizes: npt.NDArray[np.integer], accuracies: npt.NDArray[np.floating]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``a``, ``b`` and the squared error for every row, shape and scale: ``(rows, shapes,
    scales)``. Fits with ``b <= 0`` (not rising) or ``a > 1`` get an infinite error.
    """
    y = np.asarray(accuracies, dtype=np.float64)  # (rows, sizes)
    basis = _basis(np.asarray(sizes, dtype=np.float64))  # (shapes, scales, sizes)
    # Regress y on -basis with an intercept: b = -cov(g, y) / var(g), a = mean(y) + b mean(g).
    g_mean = basis.mean(axis=-1)
    centered = basis - g_mean[..., None]
    spread = np.maximum((centered**2).sum(axis=-1), 1e-300)
    y_mean = y.mean(axis=1)
    y_centered = y - y_mean[:, None]
    b = -np.einsum("in,kln->ikl", y_centered, centered) / spread
    a = y_mean[:, None, None] + b * g_mean
    # Squared error from the normal equations: sum((y - mean)^2) - b^2 * sum(centered^2).
    sse = (y_centered**2).sum(axis=1)[:, None, None] - b**2 * spread
    sse[(b <= 0) | (a > 1.0)] = np.inf
    return a, b, sse


def _basis(sizes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Every shape's rising part at every scale of its grid and size: ``(shapes, scales,
    sizes)``; the curve up to ``a`` and ``b``."""
    return np.stack(
        [shape.rising(sizes[None, :], SCALES[shape.family][:, None]) for shape in SHAPES]
    )


def _needed_per_shape(
    sizes: npt.NDArray[np.integer],
    boot_scores: npt.NDArray[np.float64],
    boot_current: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Labels needed per resample and shape ``(n_boot, shapes)``, with each shape's weight.

    Each shape's best fit is weighted by how well it explains the resample's points,
    ``exp(-chi2 / 2)`` against the best shape, with each size's noise taken from the spread
    of the resamples; so shapes the points cannot tell apart share a resample equally, and
    a shape the points rule out drops away. Each resample's weights sum to one.
    """
    a, b, sse = _fit_grid(sizes, boot_scores)
    rows = np.arange(len(a))[:, None]
    shapes = np.arange(len(SHAPES))[None, :]
    scale = np.argmin(sse, axis=2)  # (n_boot, shapes): the best scale for each shape
    a, b, sse = a[rows, shapes, scale], b[rows, shapes, scale], sse[rows, shapes, scale]
    basis = _basis(np.asarray(sizes, dtype=np.float64))[shapes, scale]  # (n_boot, shapes, sizes)
    fitted = a[..., None] - b[..., None] * basis
    # Each size's noise is its whole spread over the resamples. The sizes share items, so part
    # of that spread lifts every size alike; counting it keeps in play the shapes that the
    # points cannot firmly rule out (offline on AG News, the narrower alternative left the
    # truth outside the band as often and gave no number more often).
    noise = np.maximum(boot_scores.var(axis=0), 1e-6)
    chi2 = (((boot_scores[:, None, :] - fitted) ** 2) / noise).sum(axis=-1)
    chi2[~np.isfinite(sse)] = np.inf
    finite = np.isfinite(chi2)
    best = chi2.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # rows with no finite fit: inf - inf
        weights = np.where(finite, np.exp(-(chi2 - best) / 2), 0.0)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-300)
    needed = np.stack(
        [
            _labels_for(shape, a[:, k], b[:, k], SCALES[shape.family][scale[:, k]], boot_current)
            for k, shape in enumerate(SHAPES)
        ],
        axis=1,
    )
    # Shapes with no rising fit never get there; a resample with none at all has a flat curve.
    needed[weights == 0] = np.inf
    weights[weights.sum(axis=1) == 0] = 1.0 / len(SHAPES)
    return needed, weights


def _weighted_quantiles(
    values: npt.NDArray[np.float64], weights: npt.NDArray[np.float64], quantiles: list[float]
) -> list[float]:
    """Quantiles of ``values`` weighted by ``weights``; always one of the values (maybe inf)."""
    order = np.argsort(values, axis=None)
    cumulative = np.cumsum(weights.ravel()[order])
    picks = np.searchsorted(cumulative, np.array(quantiles) * cumulative[-1])
    return [float(values.ravel()[order[min(i, len(order) - 1)]]) for i in picks]


def _stretched_log(n: npt.ArrayLike, d: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``(n**d - 1) / d``, which is ``log(n)`` at ``d = 0`` (the Box-Cox transform)."""
    n_, d_ = np.broadcast_arrays(np.asarray(n, dtype=np.float64), np.asarray(d, np.float64))
    safe = np.where(d_ == 0, 1.0, d_)
    return np.where(d_ == 0, np.log(n_), np.expm1(safe * np.log(n_)) / safe)


def _labels_for(
    shape: Shape, a: npt.ArrayLike, b: npt.ArrayLike, scale: npt.ArrayLike, accuracy: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Inverse of the curve: the ``n`` where it reaches ``accuracy``; inf where it never does.
    A curve that is not rising (``b <= 0``) never does."""
    a_, b_, scale_, accuracy_ = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (a, b, scale, accuracy))
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        # At its start the curve is a - b; below that the accuracy is reached at once.
        ratio = np.clip((a_ - accuracy_) / b_, 1e-300, 1.0)
    labels = shape.labels_for(ratio, scale_)
    return np.where((accuracy_ >= a_) | ~(b_ > 0), np.inf, labels)


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
