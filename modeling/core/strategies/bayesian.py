"""BALD: disagreement between MC-dropout samples of the model, and its scores."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from modeling.core.strategies.base import (
    EPS,
    FloatArray,
    IndexArray,
    QueryStrategy,
    top_n,
    uncertainty_scores,
)


class BaldStrategy(QueryStrategy):
    """BALD: the items on which MC-dropout samples of the model disagree most.

    The score is the mutual information between an item's label and the model's weights,
    ``H[mean_t p_t] - mean_t H[p_t]`` over ``T`` stochastic forward passes (dropout on), so it
    favours items the model is unsure about *because it lacks knowledge*, not items that are
    ambiguous to every sample (Houlsby et al. 2011; Gal et al. 2017). Multi-label: each label
    is a binary problem and an item scores its most informative label, as in
    :func:`uncertainty_scores`.

    Args:
        samples: ``(T, n_pool, n_classes)`` probabilities from ``T`` dropout passes over the
            same pool as ``probabilities``. A deterministic model (the head) has none; then
            the mutual information is 0 and the score falls back to the entropy of
            ``probabilities``, i.e. :class:`EntropyStrategy`.
    """

    def __init__(self, samples: FloatArray | None = None) -> None:
        self.samples = samples

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
        if self.samples is None:
            return top_n(uncertainty_scores(probabilities, multi_label, "entropy"), n)
        if self.samples.shape[1:] != np.shape(probabilities):
            raise ValueError("samples must be (T, n_pool, n_classes) for the same pool")
        return top_n(bald_scores(self.samples, multi_label=multi_label), n)


def bald_scores(samples: FloatArray, *, multi_label: bool = False) -> npt.NDArray[np.float64]:
    """Mutual information per item from ``(T, n, n_classes)`` MC-dropout probabilities."""
    values = np.asarray(samples, dtype=np.float64)
    if multi_label:
        values = np.stack([values, 1.0 - values], axis=-1)  # (T, n, labels, 2)

    def entropy(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        result: npt.NDArray[np.float64] = -(p * np.log(np.clip(p, EPS, 1.0))).sum(axis=-1)
        return result

    information = entropy(values.mean(axis=0)) - entropy(values).mean(axis=0)
    information = np.maximum(information, 0.0)  # exact 0 can come out as -1e-17
    if multi_label:
        information = information.max(axis=1, initial=0.0)
    return information
