"""Initialization: the first picks, before any model exists (k-means centres, nearest to texts)."""

from __future__ import annotations

import numpy as np

from modeling.core.strategies.base import FloatArray, IndexArray, squared_distances, top_n
from modeling.core.strategies.clustering import kmeans


def cold_start(embeddings: FloatArray, n: int, rng: np.random.Generator) -> IndexArray:
    """Pick ``n`` typical, mutually different items before any model exists.

    Runs k-means with ``n`` clusters (on a random sample of at most
    ``max(50 * n, 10_000)`` items, which is plenty to place ``n`` centroids) and returns, for
    each centroid, the nearest pool item not already picked, ordered by cluster size, largest
    first.

    Args:
        embeddings: ``(n_pool, dim)`` L2-normalized embeddings.
        n: how many items to pick.
        rng: random generator for sampling and k-means initialisation.

    Returns:
        ``min(n, n_pool)`` distinct row indices into ``embeddings``.
    """
    pool_size = len(embeddings)
    n = min(n, pool_size)
    if n <= 0:
        return np.empty(0, dtype=np.intp)
    sample_size = min(pool_size, max(50 * n, 10_000))
    sample = np.arange(pool_size)
    if sample_size < pool_size:
        sample = np.sort(rng.choice(pool_size, size=sample_size, replace=False))
    centroids, assignment = kmeans(embeddings[sample], n, rng)
    cluster_sizes = np.bincount(assignment, minlength=n)
    distances = squared_distances(np.asarray(embeddings, np.float32), centroids)
    picks: list[int] = []
    taken: set[int] = set()
    for cluster in np.argsort(-cluster_sizes, kind="stable"):
        # Fewer than n items are taken, so one of the n nearest is always free.
        nearest = top_n(-distances[:, cluster], n)
        item = next(int(i) for i in nearest if int(i) not in taken)
        picks.append(item)
        taken.add(item)
    return np.asarray(picks, dtype=np.intp)


def nearest_to(query_embeddings: FloatArray, pool_embeddings: FloatArray, n: int) -> IndexArray:
    """Pool items most similar to a set of queries, e.g. the embedded label descriptions.

    Each query ranks the pool by cosine similarity; the ranked lists are interleaved
    (first of query 1, first of query 2, ..., then the seconds) skipping items already taken,
    so every label description gets about ``n / n_queries`` items.

    Args:
        query_embeddings: ``(n_queries, dim)`` L2-normalized, or a single ``(dim,)`` vector.
        pool_embeddings: ``(n_pool, dim)`` L2-normalized.
        n: how many items to return.

    Returns:
        ``min(n, n_pool)`` distinct row indices into ``pool_embeddings``.
    """
    queries = np.atleast_2d(np.asarray(query_embeddings, dtype=np.float32))
    n = min(n, len(pool_embeddings))
    if n <= 0 or len(queries) == 0:
        return np.empty(0, dtype=np.intp)
    similarities = np.asarray(pool_embeddings, dtype=np.float32) @ queries.T
    rankings = [top_n(similarities[:, q], n) for q in range(len(queries))]
    picks: list[int] = []
    taken: set[int] = set()
    for rank in range(n):
        for ranking in rankings:
            item = int(ranking[rank])
            if item not in taken:
                picks.append(item)
                taken.add(item)
                if len(picks) == n:
                    return np.asarray(picks, dtype=np.intp)
    return np.asarray(picks, dtype=np.intp)
