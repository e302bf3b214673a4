"""Model-only strategies: random sampling and the three classic uncertainty measures."""

from __future__ import annotations

import numpy as np

from modeling.core.strategies.base import (
    FloatArray,
    IndexArray,
    QueryStrategy,
    UncertaintyMeasure,
    top_n,
    uncertainty_scores,
)


class RandomStrategy(QueryStrategy):
    """Uniformly random items: the baseline every other strategy must beat."""

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
        pool_size = len(embeddings)
        return rng.choice(pool_size, size=min(n, pool_size), replace=False).astype(np.intp)


class _UncertaintyStrategy(QueryStrategy):
    """Top ``n`` items by one uncertainty measure; ties go to the lower index."""

    measure: UncertaintyMeasure

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
        return top_n(uncertainty_scores(probabilities, multi_label, self.measure), n)


class LeastConfidence(_UncertaintyStrategy):
    """Items whose most likely class has the lowest probability."""

    measure = "least_confidence"


class MarginStrategy(_UncertaintyStrategy):
    """Items with the smallest gap between the two most likely classes."""

    measure = "margin"


class EntropyStrategy(_UncertaintyStrategy):
    """Items whose predicted distribution has the highest entropy."""

    measure = "entropy"
