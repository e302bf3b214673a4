"""Classifiers that turn item embeddings into per-class probabilities.

A classifier is told the project's number of classes up front, so its probability columns
always follow the project's class order, even when only some classes have examples yet.
Nothing here imports Django.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

FloatArray = npt.NDArray[np.floating]
# How far below the other classes' scores a class without examples sits in `linear_layer`.
ABSENT_CLASS_MARGIN = 30.0


class Classifier(ABC):
    """What the active-learning loop needs from a model: fit on labeled items, score the rest.

    Single-label: ``y`` is an integer vector of class indices in ``range(n_classes)`` and
    ``predict_proba`` rows sum to 1. Multi-label: ``y`` is an ``(n, n_classes)`` 0/1 indicator
    matrix and each column of ``predict_proba`` is an independent probability that the label
    applies. ``X`` is whatever the classifier consumes: embeddings for :class:`HeadClassifier`,
    a fine-tuned transformer classifier could take texts or token ids behind the same methods.
    """

    def __init__(self, n_classes: int, *, multi_label: bool = False) -> None:
        if n_classes < 1:
            raise ValueError(f"n_classes must be at least 1, got {n_classes}")
        self.n_classes = n_classes
        self.multi_label = multi_label

    @abstractmethod
    def fit(self, X: FloatArray, y: npt.NDArray[np.integer]) -> Classifier:
        """Train on the labeled items and return ``self``."""

    @abstractmethod
    def predict_proba(self, X: FloatArray) -> npt.NDArray[np.float64]:
        """Return an ``(len(X), n_classes)`` array of probabilities in project class order."""


HEAD_C_CANDIDATES = (3.0, 10.0, 30.0)
"""Inverse regularizations a single-label head chooses from by cross-validation (README,
*The head's regularization*): on unit-norm MiniLM embeddings no one value fits every project.
With 3.0 alone, Banking77 (77 classes, a handful of labels each) was 2 to 14 points below the
chosen C from 50 to 525 labels over 6 repeats, while 10.0 alone cost SST-2 1 to 3 points."""

HEAD_C = 3.0
"""The inverse regularization when there are too few labels to choose one, and for multi-label
heads."""

CHOICE_FOLDS = 3
CHOICE_MIN_LABELS = 30
CHOICE_MAX_ROWS = 3000
"""A choice cross-validates on at most this many labels, drawn at random, to bound its cost."""


def choose_C(
    X: FloatArray,
    y: npt.NDArray[np.integer],
    n_classes: int,
    candidates: Sequence[float] = HEAD_C_CANDIDATES,
) -> float:
    """The candidate with the lowest cross-validated log-loss of a head fitted on ``X, y``.

    ``CHOICE_FOLDS`` folds of shuffled rows (a fixed seed, so the same labels give the same
    choice); with fewer than ``CHOICE_MIN_LABELS`` labels or a single class, :data:`HEAD_C`.
    Ties go to the earlier, more regularized, candidate.
    """
    y = np.asarray(y)
    if len(y) < CHOICE_MIN_LABELS or len(np.unique(y)) < 2:
        return HEAD_C
    rows = np.random.default_rng(0).permutation(len(y))[:CHOICE_MAX_ROWS]
    folds = np.array_split(rows, CHOICE_FOLDS)
    losses = []
    for C in candidates:
        loss = 0.0
        for k, held in enumerate(folds):
            kept = np.concatenate([fold for j, fold in enumerate(folds) if j != k])
            head = HeadClassifier(n_classes, C=C).fit(X[kept], y[kept])
            probabilities = head.predict_proba(X[held])
            loss -= float(np.log(probabilities[np.arange(len(held)), y[held]]).sum())
        losses.append(loss)
    return float(candidates[int(np.argmin(losses))])


class HeadClassifier(Classifier):
    """Logistic regression on frozen sentence embeddings: trains in milliseconds.

    Single-label fits one multinomial model on the classes that have examples; classes with
    none get probability near zero (every row is smoothed by ``smoothing`` and renormalized so
    no class is ever exactly 0 and rows still sum to 1). With a single class seen so far the
    prediction is that class, smoothed the same way.

    Multi-label fits one binary model per label (one-vs-rest). A label that has no positive
    or no negative example yet cannot be learned, so it gets a constant, Laplace-smoothed
    prior ``(positives + 1) / (n + 2)`` instead.

    Args:
        n_classes: number of classes (labels) of the project.
        multi_label: ``y`` is an indicator matrix and labels are independent.
        C: inverse regularization strength; None: chosen at each single-label fit by
            :func:`choose_C` (:data:`HEAD_C` for multi-label). ``fitted_C`` says which.
        max_iter: iteration cap for the lbfgs solver.
        smoothing: probability mass added to every class before renormalizing (single-label).
    """

    def __init__(
        self,
        n_classes: int,
        *,
        multi_label: bool = False,
        C: float | None = None,
        max_iter: int = 200,
        smoothing: float = 1e-3,
    ) -> None:
        super().__init__(n_classes, multi_label=multi_label)
        self.C = C
        self.fitted_C = C if C is not None else HEAD_C
        self.max_iter = max_iter
        self.smoothing = smoothing
        # Linear scores are X @ coef.T + intercept, one column per class (per label).
        self._coef: npt.NDArray[np.float64] | None = None
        self._intercept: npt.NDArray[np.float64] | None = None
        self._columns: npt.NDArray[np.intp] | None = None
        self._prior: npt.NDArray[np.float64] | None = None
        self._width = 0

    def fit(self, X: FloatArray, y: npt.NDArray[np.integer]) -> HeadClassifier:
        """Fit on embeddings ``X`` ``(n, d)``; see the class docstring for the shape of ``y``."""
        X = np.asarray(X)
        y = np.asarray(y)
        if len(X) == 0:
            raise ValueError("cannot fit a classifier on zero examples")
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        self._width = X.shape[1]
        # lbfgs on a 1000 x 384 problem is ~10x slower when BLAS threads compete for the
        # cores (measured: 340 ms against 32 ms on 2 cores); one thread is plenty here.
        with threadpool_limits(limits=1, user_api="blas"):
            if self.multi_label:
                self._fit_multi_label(X, y)
            else:
                if self.C is None:
                    self.fitted_C = choose_C(X, y, self.n_classes)
                self._fit_single_label(X, y)
        return self

    def predict_proba(self, X: FloatArray) -> npt.NDArray[np.float64]:
        """Return probabilities ``(len(X), n_classes)`` in project class order."""
        if self._prior is None:
            raise RuntimeError("HeadClassifier.predict_proba called before fit")
        X = np.asarray(X)
        probabilities = np.tile(self._prior, (len(X), 1))
        if self._coef is not None and self._intercept is not None and self._columns is not None:
            scores = X @ self._coef.T.astype(X.dtype, copy=False) + self._intercept
            scores = scores.astype(np.float64, copy=False)
            if self.multi_label:
                probabilities[:, self._columns] = _sigmoid(scores)
            else:
                probabilities[:, self._columns] = _softmax(scores)
        if self.multi_label:
            return probabilities
        probabilities += self.smoothing
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return probabilities

    def linear_layer(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Weights ``(n_classes, d)`` and biases ``(n_classes,)`` of one linear layer whose
        softmax (sigmoid for multi-label) gives this head's probabilities, before smoothing.

        This is the head as a layer on top of the encoder's pooled embedding: fine-tuning
        starts from it (LP-FT), so its first step predicts what the head predicts. A class
        with no examples yet gets a bias far below the others (probability ~e^-30); a label
        the multi-label head cannot learn yet gets its prior as a constant.
        """
        if self._prior is None:
            raise RuntimeError("HeadClassifier.linear_layer called before fit")
        weights = np.zeros((self.n_classes, self._width))
        if self.multi_label:
            prior = np.clip(self._prior, 1e-6, 1 - 1e-6)
            biases = np.log(prior / (1 - prior))
        else:
            biases = np.where(self._prior > 0, 0.0, -ABSENT_CLASS_MARGIN)
        if self._coef is not None and self._intercept is not None and self._columns is not None:
            weights[self._columns] = self._coef
            biases[self._columns] = self._intercept
            if not self.multi_label:
                absent = np.setdiff1d(np.arange(self.n_classes), self._columns)
                biases[absent] = self._intercept.min() - ABSENT_CLASS_MARGIN
        return weights, biases

    def _fit_single_label(self, X: FloatArray, y: npt.NDArray[np.integer]) -> None:
        if y.ndim != 1 or y.min() < 0 or y.max() >= self.n_classes:
            raise ValueError(f"y must be class indices in range({self.n_classes})")
        present = np.unique(y)
        self._prior = np.zeros(self.n_classes)
        self._coef = self._intercept = self._columns = None
        if len(present) == 1:
            self._prior[present[0]] = 1.0
            return
        with warnings.catch_warnings():
            # scikit-learn warns on every fit that sees more classes than half its examples:
            # what the first labels of a project with many classes always look like.
            warnings.filterwarnings("ignore", "The number of unique classes", UserWarning)
            model = self._logistic_regression().fit(X, y)
        coef = np.asarray(model.coef_, dtype=np.float64)
        intercept = np.asarray(model.intercept_, dtype=np.float64)
        if len(present) == 2:
            # scikit-learn stores one score column for two classes; softmax([-s/2, s/2]) is
            # exactly sigmoid(s), so split it symmetrically.
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        self._coef, self._intercept = coef, intercept
        self._columns = np.asarray(model.classes_, dtype=np.intp)

    def _fit_multi_label(self, X: FloatArray, y: npt.NDArray[np.integer]) -> None:
        if y.ndim != 2 or y.shape[1] != self.n_classes:
            raise ValueError(f"y must be an indicator matrix with {self.n_classes} columns")
        y = (y > 0).astype(np.int64)
        positives = y.sum(axis=0)
        self._prior = (positives + 1.0) / (len(y) + 2.0)
        learnable = np.flatnonzero((positives > 0) & (positives < len(y)))
        self._coef = self._intercept = self._columns = None
        if len(learnable) == 0:
            return
        coefs, intercepts = [], []
        for label in learnable:
            model = self._logistic_regression().fit(X, y[:, label])
            coefs.append(np.asarray(model.coef_[0], dtype=np.float64))
            intercepts.append(float(model.intercept_[0]))
        self._coef = np.vstack(coefs)
        self._intercept = np.asarray(intercepts)
        self._columns = learnable.astype(np.intp)

    def _logistic_regression(self) -> LogisticRegression:
        return LogisticRegression(C=self.fitted_C, max_iter=self.max_iter)


def _softmax(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    result: npt.NDArray[np.float64] = shifted / shifted.sum(axis=1, keepdims=True)
    return result


def _sigmoid(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    result: npt.NDArray[np.float64] = 0.5 * (1.0 + np.tanh(0.5 * scores))
    return result
