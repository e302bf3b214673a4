"""The serving order: the strategy's batch first, then the rest by uncertainty."""

from __future__ import annotations

import numpy as np

from modeling.ranking import rank_pool
from modeling.strategies import MarginStrategy, RandomStrategy


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
