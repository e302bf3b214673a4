"""The serving order: the strategy's batch first, then the rest by uncertainty."""

from __future__ import annotations

import numpy as np

from modeling.core.ranking import farthest_first, rank_pool
from modeling.core.strategies import MarginStrategy, RandomStrategy


def test_the_batch_comes_first_then_the_most_uncertain() -> None:
    probabilities = np.array(
        [[0.95, 0.05], [0.5, 0.5], [0.7, 0.3], [0.55, 0.45], [0.99, 0.01]], dtype=np.float64
    )
    embeddings = np.eye(5, dtype=np.float32)

    order = rank_pool(probabilities, embeddings, MarginStrategy(), 1, 4, np.random.default_rng(0))

    assert order.tolist() == [1, 3, 2, 0]


def test_random_batches_are_followed_by_uncertainty_without_repeats() -> None:
    rng = np.random.default_rng(3)
    probabilities = rng.dirichlet(np.ones(3), size=50)
    embeddings = rng.normal(size=(50, 8)).astype(np.float32)

    order = rank_pool(probabilities, embeddings, RandomStrategy(), 5, 20, rng)

    assert len(order) == len(set(order.tolist())) == 20


def test_farthest_first_alternates_between_distant_groups() -> None:
    near_a = np.array([[1.0, 0.0], [0.99, 0.05], [0.98, -0.05]])
    near_b = np.array([[-1.0, 0.0], [-0.99, 0.05]])
    points = np.vstack([near_a, near_b])

    order = farthest_first(points)

    assert sorted(order.tolist()) == [0, 1, 2, 3, 4]
    first_two = {int(i) < 3 for i in order[:2]}
    assert first_two == {True, False}
