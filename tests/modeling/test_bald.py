"""BALD picks the items whose MC-dropout samples disagree, not those that are merely 50/50."""

from __future__ import annotations

import numpy as np

from modeling.core.strategies import STRATEGIES, BaldStrategy, bald_scores

EMBEDDINGS = np.eye(3, dtype=np.float32)


def test_bald_prefers_disagreeing_samples_over_agreed_doubt() -> None:
    samples = np.array(
        [
            # item 0: every sample says 50/50 (ambiguous text); item 1: samples contradict each
            # other (the model lacks knowledge); item 2: every sample is sure.
            [[0.5, 0.5], [0.99, 0.01], [0.9, 0.1]],
            [[0.5, 0.5], [0.01, 0.99], [0.9, 0.1]],
        ]
    )
    mean = samples.mean(axis=0)  # items 0 and 1 look the same: 50/50

    picked = BaldStrategy(samples).query(mean, EMBEDDINGS, 1, np.random.default_rng(0))

    assert picked.tolist() == [1]
    scores = bald_scores(samples)
    assert scores[0] == 0.0
    assert scores[1] > 0.6
    assert scores[2] == 0.0


def test_multi_label_bald_scores_an_item_by_its_most_disputed_label() -> None:
    samples = np.array(
        [
            [[0.9, 0.5], [0.9, 0.9]],
            [[0.9, 0.5], [0.9, 0.1]],
        ]
    )

    scores = bald_scores(samples, multi_label=True)

    assert scores[0] == 0.0
    assert scores[1] > 0.3


def test_without_dropout_samples_bald_falls_back_to_entropy() -> None:
    probabilities = np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3]])

    picked = STRATEGIES["bald"]().query(probabilities, EMBEDDINGS, 2, np.random.default_rng(0))

    assert picked.tolist() == [1, 2]
