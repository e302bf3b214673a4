"""Strategies that spread a batch out: k-means centres, core-set, clustered uncertainty, BADGE."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from modeling.core.strategies.base import (
    FloatArray,
    IndexArray,
    QueryStrategy,
    UncertaintyMeasure,
    min_squared_distances,
    squared_distances,
    top_n,
    uncertainty_scores,
)
from modeling.core.strategies.clustering import best_per_cluster, kmeans
from modeling.core.strategies.initialization import cold_start


class KMeansDiversity(QueryStrategy):
    """Items nearest the centroids of ``n`` k-means clusters: typical and spread out.

    Ignores the model; see :func:`cold_start`.
    """

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
        return cold_start(embeddings, n, rng)


class CoreSet(QueryStrategy):
    """Greedy k-center: repeatedly take the item farthest from everything labeled or chosen.

    Sener & Savarese (2018). Distances from a 100k pool to every labeled item are costly, so
    the search runs on a random sample of at most ``max_pool`` pool items.
    """

    def __init__(self, max_pool: int = 10_000) -> None:
        self.max_pool = max_pool

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
        n = min(n, pool_size)
        if n <= 0:
            return np.empty(0, dtype=np.intp)
        sample = np.arange(pool_size)
        if pool_size > self.max_pool:
            sample = np.sort(rng.choice(pool_size, size=self.max_pool, replace=False))
        points = np.asarray(embeddings[sample], dtype=np.float32)
        if labeled_embeddings is not None and len(labeled_embeddings) > 0:
            nearest = min_squared_distances(points, np.asarray(labeled_embeddings, np.float32))
        else:
            nearest = np.full(len(points), np.inf, dtype=np.float32)
        squared_norms = np.einsum("ij,ij->i", points, points)
        chosen: list[int] = []
        for _ in range(n):
            # With nothing labeled every distance is inf and argmax takes row 0, which is
            # a random pool item whenever the pool was sampled.
            best = int(np.argmax(nearest))
            chosen.append(best)
            distances = squared_distances(points, points[best : best + 1], squared_norms)
            nearest = np.minimum(nearest, distances[:, 0])
            nearest[best] = -1.0
        return sample[chosen].astype(np.intp)


class UncertainDiverse(QueryStrategy):
    """Uncertain items that are not near-duplicates of each other.

    1. Keep the ``candidates_per_item * n`` items with the highest margin uncertainty.
    2. Cluster those candidates into ``n`` groups with k-means, each candidate weighted by its
       uncertainty so centroids lean towards the uncertain regions.
    3. From each cluster take its most uncertain member.

    Near-duplicates land in the same cluster, so a batch never spends several labels on one
    kind of item, while every pick is still among the most uncertain. Only the small
    candidate set is clustered, so a 100k pool costs little more than a top-n.
    """

    def __init__(self, candidates_per_item: int = 10, measure: UncertaintyMeasure = "margin"):
        self.candidates_per_item = candidates_per_item
        self.measure = measure

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
        scores = uncertainty_scores(probabilities, multi_label, self.measure)
        candidates = top_n(scores, self.candidates_per_item * n)
        if len(candidates) <= n:
            return candidates
        candidate_scores = scores[candidates]
        # A small floor keeps fully confident candidates in the clustering at all.
        weights = candidate_scores + 1e-3
        _, assignment = kmeans(embeddings[candidates], n, rng, weights=weights)
        picks = best_per_cluster(assignment, candidate_scores, n)
        return candidates[picks]


class BadgeStrategy(QueryStrategy):
    """BADGE (Ash et al., 2020): k-means++ seeding on last-layer gradient embeddings.

    With the model's own guess ``e_i`` (one-hot of the most likely class) as the label, the
    cross-entropy gradient of a linear head at item ``i`` is ``g_i = (p_i - e_i) x_i^T``: large
    when the model is unsure, pointing where the item would move the weights. k-means++
    seeding on the ``g_i`` picks items that are both uncertain (long gradients) and different
    (gradients far apart), with no batch-size knob.

    ``g_i`` has ``n_classes * dim`` entries (77 x 384 for Banking77) and is never built: its
    inner products factor as ``g_i . g_j = ((p_i - e_i) . (p_j - e_j)) * (x_i . x_j)``, so
    each seeding step costs ``O(n_pool * (n_classes + dim))``.

    Multi-label uses the per-label binary version: label ``l`` contributes ``p_il - y_il``
    with the guess ``y_il = 1`` when ``p_il >= 0.5``, which is the gradient of the summed
    binary cross-entropies of one-vs-rest heads.

    Args:
        candidates_per_item: when set, seed only among the ``candidates_per_item * n``
            items with the highest margin uncertainty instead of the whole pool.
    """

    def __init__(self, candidates_per_item: int | None = None) -> None:
        self.candidates_per_item = candidates_per_item

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
        rows = np.arange(len(embeddings), dtype=np.intp)
        if self.candidates_per_item is not None:
            rows = top_n(
                uncertainty_scores(probabilities, multi_label), self.candidates_per_item * n
            )
        residuals = gradient_residuals(np.asarray(probabilities)[rows], multi_label)
        points = np.asarray(embeddings, dtype=np.float32)[rows]
        return rows[_gradient_kmeans_plus_plus(residuals, points, n, rng)]


def gradient_residuals(
    probabilities: FloatArray, multi_label: bool = False
) -> npt.NDArray[np.float32]:
    """``p - guess``: the per-class factor of each item's last-layer gradient (float32).

    Single-label the guess is the one-hot of the most likely class; multi-label it is
    ``p >= 0.5`` per label.
    """
    residuals = np.array(probabilities, dtype=np.float32)
    if residuals.ndim != 2:
        raise ValueError("probabilities must be a 2-d array (n_items, n_classes)")
    if multi_label:
        residuals -= residuals >= 0.5
    elif len(residuals):
        residuals[np.arange(len(residuals)), residuals.argmax(axis=1)] -= 1.0
    return residuals


def _gradient_kmeans_plus_plus(
    residuals: npt.NDArray[np.float32],
    points: npt.NDArray[np.float32],
    n: int,
    rng: np.random.Generator,
) -> IndexArray:
    """k-means++ seeds over the implicit gradients ``residuals[i] (x) points[i]``.

    The first seed is the longest gradient (as in the BADGE reference code); each next is
    drawn with probability proportional to its squared distance to the nearest seed.
    """
    # Not sklearn.cluster.kmeans_plusplus: it needs the gradients built, (m, n_classes * dim),
    # 11.8 GB float32 for Banking77's 10k pool. Even where they fit it is far slower (one BLAS
    # thread, medians of 7): 4,000 items x 4 classes into 25 seeds 14 ms against 825 ms;
    # 1,000 x 77 classes 2.3 ms against 2.3 s. tests/modeling/test_clustering.py compares them.
    m = len(points)
    n = min(n, m)
    if n <= 0:
        return np.empty(0, dtype=np.intp)
    squared_norms = np.einsum("ij,ij->i", residuals, residuals) * np.einsum(
        "ij,ij->i", points, points
    )

    def squared_distances_to(seed: int) -> npt.NDArray[np.float32]:
        inner = (residuals @ residuals[seed]) * (points @ points[seed])
        result: npt.NDArray[np.float32] = np.maximum(
            squared_norms + squared_norms[seed] - 2.0 * inner, 0.0
        )
        return result

    seeds = [int(np.argmax(squared_norms))]
    nearest = squared_distances_to(seeds[0]).astype(np.float64)
    for _ in range(1, n):
        nearest[seeds] = 0.0
        total = nearest.sum()
        if total <= 0:
            # Every remaining gradient equals a seed's (e.g. all predictions certain).
            seed = int(rng.choice(np.setdiff1d(np.arange(m), seeds)))
        else:
            seed = int(rng.choice(m, p=nearest / total))
        seeds.append(seed)
        nearest = np.minimum(nearest, squared_distances_to(seed))
    return np.asarray(seeds, dtype=np.intp)
