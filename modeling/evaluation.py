"""Honest accuracy estimates for a classifier on few labels (no Django here)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from modeling.classifiers import Classifier


def cross_validated_accuracy(
    make_classifier: Callable[[], Classifier],
    X: npt.NDArray[np.floating],
    y: npt.NDArray[np.integer],
    *,
    folds: int = 5,
    rng: np.random.Generator,
    min_items: int = 20,
) -> float | None:
    """Mean accuracy over stratified folds, or None when there are too few labels to say.

    Args:
        make_classifier: builds a fresh, untrained classifier.
        X: ``(n, dim)`` features of the labeled items.
        y: ``(n,)`` class indices.
        folds: number of folds; fewer are used when a class has fewer items.
        rng: shuffles items within each class before they are dealt into folds.
        min_items: below this many labels no estimate is given.
    """
    if len(y) < min_items:
        return None
    counts = np.bincount(y)
    k = int(min(folds, counts[counts > 0].min()))
    if k < 2:
        return None
    fold_of = np.empty(len(y), dtype=np.intp)
    for cls in np.flatnonzero(counts):
        members = rng.permutation(np.flatnonzero(y == cls))
        fold_of[members] = np.arange(len(members)) % k
    correct = 0
    for fold in range(k):
        test = fold_of == fold
        model = make_classifier().fit(X[~test], y[~test])
        correct += int(np.sum(model.predict_proba(X[test]).argmax(axis=1) == y[test]))
    return correct / len(y)
