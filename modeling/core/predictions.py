"""Every item's prediction, kept compactly: the top few classes and their probabilities.

A retrain predicts the whole pool, labeled items included; storing the full probability
matrix of a 77-class project with 100,000 items for every version would cost 30 MB a version,
so only the ``TOP_K`` most probable classes of each item are kept (what pages, exports and
the prediction history show).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

TOP_K = 3


@dataclass(frozen=True)
class TopPredictions:
    """The ``k`` most probable classes of each item, most probable first."""

    classes: npt.NDArray[np.int16]  # (n, k) class indices
    probabilities: npt.NDArray[np.float32]  # (n, k), descending along each row

    @property
    def confidence(self) -> npt.NDArray[np.float32]:
        """The probability of each item's most probable class."""
        return self.probabilities[:, 0]

    def uncertainty(self, multi_label: bool) -> npt.NDArray[np.float32]:
        """How unsure the model is, 0 (sure) to 1 (a coin toss), per item.

        Single-label: one minus the margin between the two most probable classes (margin
        sampling's measure). Multi-label: one minus how far the least decided of the kept
        labels is from 0.5, doubled.
        """
        if multi_label:
            spread = np.abs(2 * self.probabilities - 1).min(axis=1)
            return (1 - spread).astype(np.float32)
        if self.probabilities.shape[1] < 2:
            return np.zeros(len(self.probabilities), dtype=np.float32)
        margin = self.probabilities[:, 0] - self.probabilities[:, 1]
        return (1 - margin).astype(np.float32)


def top_predictions(probabilities: npt.NDArray[np.floating], k: int = TOP_K) -> TopPredictions:
    """Keep the ``k`` most probable classes of each row of ``(n, n_classes)`` probabilities."""
    n, n_classes = probabilities.shape
    k = min(k, n_classes)
    if n == 0 or k == 0:
        return TopPredictions(np.zeros((n, k), np.int16), np.zeros((n, k), np.float32))
    if k < n_classes:
        candidates = np.argpartition(-probabilities, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(n_classes), (n, n_classes))
    chosen = np.take_along_axis(probabilities, candidates, axis=1)
    order = np.argsort(-chosen, axis=1, kind="stable")
    classes = np.take_along_axis(candidates, order, axis=1).astype(np.int16)
    return TopPredictions(classes, np.take_along_axis(chosen, order, axis=1).astype(np.float32))


def predicted_classes(
    top: TopPredictions, row: int, multi_label: bool, threshold: float = 0.5
) -> list[int]:
    """The classes the model predicts for one item: its best one, or (multi-label) every kept
    class at or above ``threshold``."""
    if multi_label:
        return [
            int(c)
            for c, p in zip(top.classes[row], top.probabilities[row], strict=True)
            if p >= threshold
        ]
    return [int(top.classes[row, 0])] if top.classes.shape[1] else []
