"""The hand-written k-means and k-means++ the strategies share, checked against scikit-learn.

They are kept over sklearn for speed (see modeling/core/strategies/clustering.py); these tests
hold them to sklearn's results.
"""

from __future__ import annotations

import statistics

import numpy as np
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.metrics import adjusted_rand_score

from modeling.core.strategies import BadgeStrategy, gradient_residuals, kmeans
from modeling.core.strategies.clustering import kmeans_plus_plus


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def blobs(n_blobs: int, per_blob: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tight, far-apart groups: every sensible clustering finds exactly these."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_blobs, dim)) * 10
    group = np.repeat(np.arange(n_blobs), per_blob)
    points = centres[group] + rng.normal(size=(len(group), dim)) * 0.05
    return points.astype(np.float32), group


def overlapping_embeddings(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalized points from heavily overlapping groups, as sentence embeddings look,
    with skewed weights (a few matter, most barely), as uncertainty weights are."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim))
    points = centres[rng.integers(12, size=n)] + rng.normal(size=(n, dim)) * 1.5
    return unit(points), rng.uniform(1e-3, 1.0, n) ** 4


def weighted_inertia(points, centroids, assignment, weights) -> float:
    return float((((points - centroids[assignment]) ** 2).sum(axis=1) * weights).sum())


def seeding_potential(points, seeds, weights=None) -> float:
    """Weighted squared distance of every point to its nearest seed: what k-means++ minimizes."""
    distances = ((points[:, None, :] - points[seeds][None, :, :]) ** 2).sum(axis=-1).min(axis=1)
    return float((distances * (1.0 if weights is None else weights)).sum())


def test_kmeans_separates_two_far_apart_groups():
    points = np.vstack([np.zeros((10, 2)), np.full((10, 2), 5.0)]).astype(np.float32)

    _, assignment = kmeans(points, 2, np.random.default_rng(0))

    assert len(set(assignment[:10].tolist())) == 1
    assert len(set(assignment[10:].tolist())) == 1
    assert assignment[0] != assignment[10]


def test_kmeans_finds_the_same_clusters_as_sklearn_on_well_separated_blobs():
    for seed in range(5):
        points, truth = blobs(8, 30, 16, seed)

        _, assignment = kmeans(points, 8, np.random.default_rng(seed))
        reference = KMeans(8, n_init=1, random_state=seed).fit(points).labels_

        assert adjusted_rand_score(truth, assignment) == 1.0
        assert adjusted_rand_score(reference, assignment) == 1.0


def test_weighted_kmeans_inertia_is_within_three_percent_of_sklearn():
    points, weights = overlapping_embeddings(600, 32, seed=0)
    ratios = []
    for seed in range(5):
        centroids, assignment = kmeans(points, 20, np.random.default_rng(seed), weights=weights)
        reference = KMeans(20, n_init=1, max_iter=10, random_state=seed)
        reference.fit(points, sample_weight=weights)
        ratios.append(
            weighted_inertia(points, centroids, assignment, weights)
            / weighted_inertia(points, reference.cluster_centers_, reference.labels_, weights)
        )

    assert 0.97 < statistics.median(ratios) < 1.03


def test_kmeans_plus_plus_seeds_as_well_as_sklearns_and_never_a_weightless_point():
    points, weights = overlapping_embeddings(600, 32, seed=1)
    weights[:100] = 0.0
    ours, theirs = [], []
    for seed in range(20):
        seeds = kmeans_plus_plus(points, 20, np.random.default_rng(seed), weights)
        # One local trial per seed is the plain k-means++ that kmeans_plus_plus implements.
        _, reference = kmeans_plusplus(
            points, 20, sample_weight=weights, random_state=seed, n_local_trials=1
        )
        assert len(set(seeds.tolist())) == 20
        assert seeds.min() >= 100
        ours.append(seeding_potential(points, seeds, weights))
        theirs.append(seeding_potential(points, reference, weights))

    assert 0.9 < statistics.median(ours) / statistics.median(theirs) < 1.1


def test_badge_seeds_the_gradients_as_well_as_sklearn_on_the_materialized_gradients():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(4), 400)
    embeddings = unit(rng.normal(size=(400, 16)))
    gradients = np.einsum("ic,id->icd", gradient_residuals(probabilities), embeddings).reshape(
        400, -1
    )
    ours, theirs = [], []
    for seed in range(20):
        picks = BadgeStrategy().query(probabilities, embeddings, 10, np.random.default_rng(seed))
        _, reference = kmeans_plusplus(gradients, 10, random_state=seed, n_local_trials=1)
        ours.append(seeding_potential(gradients, picks))
        theirs.append(seeding_potential(gradients, reference))

    assert 0.85 < statistics.median(ours) / statistics.median(theirs) < 1.15


def test_badge_like_sklearn_takes_one_item_from_each_far_apart_gradient_group():
    # Five groups of items, each group on its own embedding direction, all equally unsure:
    # their gradients form five tight, far-apart groups.
    directions, group = blobs(5, 20, 8, seed=3)
    embeddings = unit(directions)
    probabilities = np.tile([0.5, 0.3, 0.2], (100, 1))
    gradients = np.einsum("ic,id->icd", gradient_residuals(probabilities), embeddings).reshape(
        100, -1
    )

    picks = BadgeStrategy().query(probabilities, embeddings, 5, np.random.default_rng(0))
    _, reference = kmeans_plusplus(gradients, 5, random_state=0)

    assert sorted(group[picks].tolist()) == [0, 1, 2, 3, 4]
    assert sorted(group[reference].tolist()) == [0, 1, 2, 3, 4]
