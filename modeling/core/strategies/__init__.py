"""Query strategies: which unlabeled items should a person label next.

Every strategy is a small class behind one method, :meth:`QueryStrategy.query`, which takes
arrays describing the unlabeled pool and returns row indices into them. Everything is numpy;
nothing here imports Django or reads the database. One module per family:

* :mod:`~modeling.core.strategies.base`: the interface, uncertainty scores, top-n, distances;
* :mod:`~modeling.core.strategies.uncertainty`: random and the classic uncertainty measures;
* :mod:`~modeling.core.strategies.diversity`: k-means centres, core-set, clustered
  uncertainty, BADGE;
* :mod:`~modeling.core.strategies.density`: density-weighted, adaptive and class-balanced;
* :mod:`~modeling.core.strategies.bayesian`: BALD over MC-dropout samples;
* :mod:`~modeling.core.strategies.initialization`: the first picks, before any model exists;
* :mod:`~modeling.core.strategies.clustering`: the k-means the others share.

Embeddings are expected to be L2-normalized (as :class:`modeling.core.encoders.TextEncoder`
returns them), so a dot product is a cosine similarity.
"""

from __future__ import annotations

from modeling.core.strategies.base import (
    FloatArray,
    IndexArray,
    QueryStrategy,
    UncertaintyMeasure,
    top_n,
    uncertainty_scores,
)
from modeling.core.strategies.bayesian import BaldStrategy, bald_scores
from modeling.core.strategies.clustering import kmeans
from modeling.core.strategies.density import (
    AdaptiveDensityDiverse,
    ClassBalancedDensity,
    DensityWeightedDiverse,
    uncovered_typical,
)
from modeling.core.strategies.diversity import (
    BadgeStrategy,
    CoreSet,
    KMeansDiversity,
    UncertainDiverse,
    gradient_residuals,
)
from modeling.core.strategies.initialization import cold_start, nearest_to
from modeling.core.strategies.uncertainty import (
    EntropyStrategy,
    LeastConfidence,
    MarginStrategy,
    RandomStrategy,
)

STRATEGIES: dict[str, type[QueryStrategy]] = {
    "random": RandomStrategy,
    "least_confidence": LeastConfidence,
    "margin": MarginStrategy,
    "entropy": EntropyStrategy,
    "kmeans": KMeansDiversity,
    "coreset": CoreSet,
    "uncertain_diverse": UncertainDiverse,
    "badge": BadgeStrategy,
    "density_diverse": DensityWeightedDiverse,
    "adaptive_density": AdaptiveDensityDiverse,
    "balanced_density": ClassBalancedDensity,
    "bald": BaldStrategy,
}
"""Strategy classes by the name stored on a project; instantiate with no arguments."""

DEFAULT_STRATEGY = "balanced_density"

__all__ = [
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "AdaptiveDensityDiverse",
    "BadgeStrategy",
    "BaldStrategy",
    "ClassBalancedDensity",
    "CoreSet",
    "DensityWeightedDiverse",
    "EntropyStrategy",
    "FloatArray",
    "IndexArray",
    "KMeansDiversity",
    "LeastConfidence",
    "MarginStrategy",
    "QueryStrategy",
    "RandomStrategy",
    "UncertainDiverse",
    "UncertaintyMeasure",
    "bald_scores",
    "cold_start",
    "gradient_residuals",
    "kmeans",
    "nearest_to",
    "top_n",
    "uncertainty_scores",
    "uncovered_typical",
]
