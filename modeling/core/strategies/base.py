"""The strategy interface, uncertainty scores, top-n and the distances every family shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating]
IndexArray = npt.NDArray[np.intp]
UncertaintyMeasure = Literal["margin", "least_confidence", "entropy"]

EPS = 1e-12
"""Floor for probabilities inside a logarithm."""


def uncertainty_scores(
    probabilities: FloatArray,
    multi_label: bool = False,
    measure: UncertaintyMeasure = "margin",
) -> npt.NDArray[np.float64]:
    """Score how informative each item's label would be: higher means more uncertain.

    Single-label (rows of ``probabilities`` sum to 1), all scores lie in ``[0, 1]``:

    * ``margin``: ``1 - (p_top - p_second)``, 1 when the two best classes tie;
    * ``least_confidence``: ``1 - p_top``;
    * ``entropy``: Shannon entropy divided by ``log(n_classes)``.

    Multi-label (each column an independent probability that the label applies): each label is
    scored as a binary problem ``(p, 1 - p)`` with the same measure, and an item's score is the
    **maximum** over its labels. The maximum (Brinker's "binary minimum margin") keeps the
    signal of the one label the model is unsure about; a mean would let many confidently
    absent labels drown it when a project has many labels.

    Args:
        probabilities: ``(n_items, n_classes)`` predicted probabilities.
        multi_label: columns are independent binary probabilities.
        measure: which uncertainty measure to use.

    Returns:
        ``(n_items,)`` float64 scores.
    """
    values = np.asarray(probabilities, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError("probabilities must be a 2-d array (n_items, n_classes)")
    if multi_label:
        per_label = np.stack([values, 1.0 - values], axis=-1)
        worst_label: npt.NDArray[np.float64] = _single_label_scores(per_label, measure).max(
            axis=1, initial=0.0
        )
        return worst_label
    return _single_label_scores(values, measure)


def _single_label_scores(
    probabilities: npt.NDArray[np.float64], measure: UncertaintyMeasure
) -> npt.NDArray[np.float64]:
    """Uncertainty over the last axis, which holds one probability distribution."""
    n_classes = probabilities.shape[-1]
    if n_classes == 1:
        return np.zeros(probabilities.shape[:-1])
    if measure == "margin":
        top_two = np.partition(probabilities, n_classes - 2, axis=-1)[..., -2:]
        result: npt.NDArray[np.float64] = 1.0 - (top_two[..., 1] - top_two[..., 0])
    elif measure == "least_confidence":
        result = 1.0 - probabilities.max(axis=-1)
    elif measure == "entropy":
        clipped = np.clip(probabilities, EPS, 1.0)
        result = -(probabilities * np.log(clipped)).sum(axis=-1) / np.log(n_classes)
    else:
        raise ValueError(f"unknown uncertainty measure {measure!r}")
    return result


def top_n(scores: FloatArray, n: int) -> IndexArray:
    """Indices of the ``n`` highest scores, best first; ties go to the lower index."""
    n = min(n, len(scores))
    if n <= 0:
        return np.empty(0, dtype=np.intp)
    scores = np.asarray(scores, dtype=np.float64)
    if n < len(scores):
        # Partition first so a 100k pool is not fully sorted; keep every item tied with the
        # n-th score so the tie-break below sees all of them.
        threshold = np.partition(scores, len(scores) - n)[len(scores) - n]
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(len(scores))
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:n]].astype(np.intp)


def squared_distances(
    a: FloatArray, b: FloatArray, a_squared_norms: FloatArray | None = None
) -> npt.NDArray[np.float32]:
    """``(len(a), len(b))`` squared Euclidean distances, clipped at zero.

    Loops that measure the same ``a`` against one new point at a time pass
    ``a_squared_norms`` so it is not recomputed on every call.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a_squared_norms is None:
        a_squared_norms = np.einsum("ij,ij->i", a, a)
    b_squared_norms = np.einsum("ij,ij->i", b, b)
    distances = a_squared_norms[:, None] + b_squared_norms[None, :] - 2.0 * (a @ b.T)
    result: npt.NDArray[np.float32] = np.maximum(distances, 0.0, dtype=np.float32)
    return result


def min_squared_distances(
    points: npt.NDArray[np.float32], others: npt.NDArray[np.float32], chunk: int = 4096
) -> npt.NDArray[np.float32]:
    """Squared distance from each point to its nearest row of ``others``, in chunks."""
    result = np.empty(len(points), dtype=np.float32)
    for start in range(0, len(points), chunk):
        block = squared_distances(points[start : start + chunk], others)
        result[start : start + chunk] = block.min(axis=1)
    return result


class QueryStrategy(ABC):
    """Choose the next items to label from an unlabeled pool.

    Subclasses implement :meth:`query`; they keep no state between calls, so one instance
    can serve every project.
    """

    @abstractmethod
    def query(
        self,
        probabilities: FloatArray,
        embeddings: FloatArray,
        n: int,
        rng: np.random.Generator,
        *,
        multi_label: bool = False,
        labeled_embeddings: FloatArray | None = None,
        labeled_counts: FloatArray | None = None,
    ) -> IndexArray:
        """Return up to ``n`` distinct row indices into the pool, most wanted first.

        Args:
            probabilities: ``(n_pool, n_classes)`` current model predictions for the pool.
            embeddings: ``(n_pool, dim)`` L2-normalized embeddings of the pool.
            n: how many items to pick; fewer come back only when the pool is smaller.
            rng: the only source of randomness, so a seeded generator gives a repeatable batch.
            multi_label: ``probabilities`` columns are independent per-label probabilities.
            labeled_embeddings: ``(n_labeled, dim)`` embeddings of already labeled items,
                for strategies that spread out from them.
            labeled_counts: ``(n_classes,)`` how many labeled items each class has, for
                strategies that balance classes; the others ignore it.
        """
