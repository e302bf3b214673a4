"""Query strategies, fed literal probability arrays and hand-placed embeddings."""

from __future__ import annotations

import time

import numpy as np
import pytest

from modeling.core.ranking import rank_pool
from modeling.core.strategies import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    AdaptiveDensityDiverse,
    BadgeStrategy,
    ClassBalancedDensity,
    CoreSet,
    DensityWeightedDiverse,
    EntropyStrategy,
    KMeansDiversity,
    LeastConfidence,
    MarginStrategy,
    RandomStrategy,
    UncertainDiverse,
    cold_start,
    gradient_residuals,
    nearest_to,
    top_n,
    uncertainty_scores,
    uncovered_typical,
)


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def random_embeddings(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).normal(size=(n, dim)))


def query(strategy, probabilities, n, embeddings=None, **kwargs) -> list[int]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if embeddings is None:
        embeddings = random_embeddings(len(probabilities))
    picks = strategy.query(probabilities, embeddings, n, np.random.default_rng(0), **kwargs)
    return picks.tolist()


def test_margin_picks_the_row_torn_between_two_classes():
    probabilities = [[0.9, 0.05, 0.05], [0.5, 0.5, 0.0], [0.6, 0.3, 0.1]]

    assert query(MarginStrategy(), probabilities, 1) == [1]
    assert query(MarginStrategy(), probabilities, 3) == [1, 2, 0]


def test_margin_breaks_ties_by_lower_index():
    probabilities = [[0.9, 0.1], [0.6, 0.4], [0.4, 0.6], [0.6, 0.4]]

    assert query(MarginStrategy(), probabilities, 2) == [1, 2]
    assert query(MarginStrategy(), probabilities, 3) == [1, 2, 3]


def test_least_confidence_and_margin_can_disagree():
    # Row 0 is unsure overall but clearly prefers class 0 over the runner-up;
    # row 1 is more confident in its top class but torn between two.
    probabilities = [[0.40, 0.20, 0.20, 0.20], [0.45, 0.45, 0.05, 0.05]]

    assert query(LeastConfidence(), probabilities, 1) == [0]
    assert query(MarginStrategy(), probabilities, 1) == [1]


def test_entropy_prefers_the_spread_out_distribution():
    probabilities = [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.98, 0.01, 0.01]]

    assert query(EntropyStrategy(), probabilities, 3) == [1, 0, 2]


def test_uncertainty_scores_are_one_for_a_coin_flip_and_zero_for_certainty():
    probabilities = np.array([[0.5, 0.5], [1.0, 0.0]])

    for measure in ("margin", "entropy"):
        scores = uncertainty_scores(probabilities, measure=measure)
        np.testing.assert_allclose(scores, [1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(
        uncertainty_scores(probabilities, measure="least_confidence"), [0.5, 0.0]
    )


def test_multi_label_scores_follow_the_most_uncertain_label():
    # Item 0: every label is clear. Item 1: one label is a coin flip. Item 2: all fairly sure.
    probabilities = np.array([[0.99, 0.01, 0.02], [0.99, 0.5, 0.01], [0.8, 0.2, 0.15]])

    scores = uncertainty_scores(probabilities, multi_label=True)

    assert scores[1] == pytest.approx(1.0)
    assert scores.argsort().tolist() == [0, 2, 1]
    assert query(MarginStrategy(), probabilities, 1, multi_label=True) == [1]


def test_multi_label_rows_are_not_read_as_one_distribution():
    # As a distribution, [0.5, 0.5] would be a perfect tie; as two labels it is two coin flips,
    # and [0.9, 0.9] is two confident "yes" answers, not a tie either.
    probabilities = np.array([[0.9, 0.9], [0.5, 0.5]])

    assert uncertainty_scores(probabilities, multi_label=True).tolist() == pytest.approx([0.2, 1.0])
    assert uncertainty_scores(probabilities).tolist() == pytest.approx([1.0, 1.0])


def test_top_n_returns_the_best_first_with_ties_to_the_lower_index():
    scores = np.array([0.1, 0.7, 0.7, 0.2, 0.7])

    assert top_n(scores, 2).tolist() == [1, 2]
    assert top_n(scores, 10).tolist() == [1, 2, 4, 3, 0]
    assert top_n(scores, 0).tolist() == []


def two_duplicate_clumps_and_spread_points() -> tuple[np.ndarray, np.ndarray, set[int], set[int]]:
    """Two clumps of 20 near-identical items each, and 20 items spread far apart.

    The clumps are also the most uncertain items, as when a pool holds many copies of one
    ambiguous message; a plain uncertainty ranking would fill a batch with copies.
    """
    rng = np.random.default_rng(7)
    dim = 32
    spread = unit(rng.normal(size=(20, dim)))
    center_a, center_b = unit(rng.normal(size=(2, dim)))
    clump_a = unit(center_a + 0.001 * rng.normal(size=(20, dim)))
    clump_b = unit(center_b + 0.001 * rng.normal(size=(20, dim)))
    embeddings = np.vstack([clump_a, clump_b, spread])
    margin = np.concatenate(
        [np.full(20, 0.01), np.full(20, 0.02), np.linspace(0.1, 0.5, 20)]
    ) + rng.uniform(0, 0.001, 60)
    top = (1 + margin) / 2
    probabilities = np.column_stack([top, 1 - top])
    return embeddings, probabilities, set(range(20)), set(range(20, 40))


def test_uncertain_diverse_takes_one_of_each_duplicate_clump():
    embeddings, probabilities, clump_a, clump_b = two_duplicate_clumps_and_spread_points()

    margin_picks = set(query(MarginStrategy(), probabilities, 5, embeddings))
    picks = query(UncertainDiverse(), probabilities, 5, embeddings)

    assert margin_picks <= clump_a  # the trap: plain margin picks five copies
    assert len(picks) == len(set(picks)) == 5
    assert len(clump_a & set(picks)) == 1
    assert len(clump_b & set(picks)) == 1


def test_badge_starts_with_the_uncertain_row_over_the_confident_one():
    probabilities = [[0.98, 0.01, 0.01], [0.4, 0.35, 0.25], [0.97, 0.02, 0.01]]
    embeddings = unit([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])

    assert query(BadgeStrategy(), probabilities, 1, embeddings) == [1]


def test_badge_never_spends_two_labels_on_one_duplicate_clump_when_others_are_as_unsure():
    # Rows 0-2 are copies; row 3 points elsewhere and is as unsure: the second pick must
    # leave the clump, since a copy's gradient is at distance zero from the first pick.
    probabilities = np.tile([0.5, 0.3, 0.2], (4, 1))
    embeddings = unit([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])

    picks = query(BadgeStrategy(), probabilities, 2, embeddings)

    assert picks == [0, 3]


def test_badge_gradient_distances_match_the_materialized_gradients():
    rng = np.random.default_rng(3)
    probabilities = rng.dirichlet(np.ones(5), 6)
    embeddings = random_embeddings(6, dim=4)
    residuals = gradient_residuals(probabilities)
    gradients = np.einsum("ic,id->icd", residuals, embeddings).reshape(6, -1)
    norms = (gradients**2).sum(axis=1)

    assert residuals[np.arange(6), probabilities.argmax(axis=1)].max() <= 0.0
    assert query(BadgeStrategy(), probabilities, 1, embeddings) == [int(np.argmax(norms))]


def test_badge_multi_label_guesses_each_label_at_one_half():
    residuals = gradient_residuals(np.array([[0.9, 0.2, 0.5]]), multi_label=True)

    assert residuals[0].tolist() == pytest.approx([-0.1, 0.2, -0.5])


def test_badge_is_repeatable_for_a_seed_and_can_seed_among_uncertain_candidates_only():
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(4), 300)
    embeddings = random_embeddings(300)
    margins = uncertainty_scores(probabilities)

    first = query(BadgeStrategy(), probabilities, 10, embeddings)
    shortlisted = query(BadgeStrategy(candidates_per_item=2), probabilities, 10, embeddings)

    assert first == query(BadgeStrategy(), probabilities, 10, embeddings)
    assert len(set(first)) == 10
    assert set(shortlisted) <= set(top_n(margins, 20).tolist())


def test_density_weighting_prefers_the_uncertain_item_with_neighbours_over_the_outlier():
    # Row 0 is the most uncertain but alone; row 1 is nearly as uncertain and sits in a
    # crowd of confidently predicted items (rows 2-9).
    rng = np.random.default_rng(0)
    crowd = unit(np.array([1.0, 0.0, 0.0]) + 0.05 * rng.normal(size=(9, 3)))
    embeddings = np.vstack([unit([[0.0, 0.0, 1.0]]), crowd])
    probabilities = np.array([[0.5, 0.5], [0.52, 0.48]] + [[0.95, 0.05]] * 8)

    assert query(MarginStrategy(), probabilities, 1, embeddings) == [0]
    assert query(DensityWeightedDiverse(candidates_per_item=3), probabilities, 1, embeddings) == [1]


def outlier_and_crowd() -> tuple[np.ndarray, np.ndarray]:
    """Row 0 is a coin flip far from the rest; row 1 is less uncertain, amid a crowd."""
    rng = np.random.default_rng(0)
    crowd = unit(np.array([1.0, 0.0, 0.0]) + 0.05 * rng.normal(size=(9, 3)))
    embeddings = np.vstack([unit([[0.3, 0.0, 1.0]]), crowd])
    probabilities = np.array([[0.5, 0.5], [0.6, 0.4]] + [[0.95, 0.05]] * 8)
    return embeddings, probabilities


def test_adaptive_density_prefers_the_crowd_while_labels_per_class_are_few():
    embeddings, probabilities = outlier_and_crowd()
    strategy = AdaptiveDensityDiverse(candidates_per_item=3)
    two_labeled = unit(np.ones((2, 3)))

    assert query(strategy, probabilities, 1, embeddings) == [1]
    assert query(strategy, probabilities, 1, embeddings, labeled_embeddings=two_labeled) == [1]


def test_adaptive_density_follows_uncertainty_once_every_class_has_many_labels():
    embeddings, probabilities = outlier_and_crowd()
    strategy = AdaptiveDensityDiverse(candidates_per_item=3)
    forty_labeled = unit(np.ones((40, 3)))  # 20 per class

    assert query(strategy, probabilities, 1, embeddings, labeled_embeddings=forty_labeled) == [0]


def test_adaptive_density_exponent_halves_at_the_half_point():
    strategy = AdaptiveDensityDiverse(half_point=2.0)

    assert strategy.density_exponent(0, 4) == 1.0
    assert strategy.density_exponent(8, 4) == pytest.approx(0.5)
    assert strategy.density_exponent(77, 77) == pytest.approx(2 / 3)
    assert strategy.density_exponent(525, 4) < 0.02


def test_balanced_density_prefers_the_class_with_fewer_labels():
    # Item 0 is a little more uncertain, but both labeled items are of its likely class.
    embeddings = unit([[1.0, 0.1, 0.0], [0.1, 1.0, 0.0], [0.0, 0.0, 1.0]])
    probabilities = [[0.52, 0.48], [0.45, 0.55], [0.99, 0.01]]
    strategy = ClassBalancedDensity(candidates_per_item=3, coverage_until=0.0)
    two_labeled = unit(np.ones((2, 3)))
    counts = np.array([2, 0])

    assert query(strategy, probabilities, 1, embeddings, labeled_embeddings=two_labeled) == [0]
    picks = query(
        strategy,
        probabilities,
        1,
        embeddings,
        labeled_embeddings=two_labeled,
        labeled_counts=counts,
    )
    assert picks == [1]


def test_balanced_density_without_counts_matches_adaptive_density_once_classes_have_labels():
    embeddings, probabilities = outlier_and_crowd()
    forty_labeled = unit(np.ones((40, 3)))
    balanced = ClassBalancedDensity(candidates_per_item=3)
    adaptive = AdaptiveDensityDiverse(candidates_per_item=3)

    for labeled in (unit(np.ones((2, 3))), forty_labeled):  # one and 20 labels per class
        assert query(balanced, probabilities, 2, embeddings, labeled_embeddings=labeled) == query(
            adaptive, probabilities, 2, embeddings, labeled_embeddings=labeled
        )


def test_balanced_density_starts_a_cold_project_in_every_clump():
    # Three tight clumps; the model is most uncertain about clump a, but nothing is labeled yet.
    rng = np.random.default_rng(0)
    centres = np.eye(3)
    embeddings = unit(np.repeat(centres, 5, axis=0) + 0.01 * rng.normal(size=(15, 3)))
    probabilities = np.array([[0.5, 0.5]] * 5 + [[0.9, 0.1]] * 10)
    picks = query(ClassBalancedDensity(), probabilities, 3, embeddings)

    assert sorted(p // 5 for p in picks) == [0, 1, 2]


def test_uncovered_typical_skips_the_clump_already_labeled():
    rng = np.random.default_rng(0)
    embeddings = unit(np.repeat(np.eye(3), 5, axis=0) + 0.01 * rng.normal(size=(15, 3)))
    labeled = unit([[1.0, 0.0, 0.0]])

    picks = uncovered_typical(embeddings, labeled, 2, np.random.default_rng(0))

    assert sorted(int(p) // 5 for p in picks) == [1, 2]


def test_the_default_strategy_is_balanced_density():
    assert STRATEGIES[DEFAULT_STRATEGY] is ClassBalancedDensity


def test_kmeans_diversity_and_cold_start_take_at_most_one_item_per_clump():
    embeddings, probabilities, clump_a, clump_b = two_duplicate_clumps_and_spread_points()

    for picks in (
        query(KMeansDiversity(), probabilities, 5, embeddings),
        cold_start(embeddings, 5, np.random.default_rng(1)).tolist(),
    ):
        assert len(set(picks)) == 5
        assert len(clump_a & set(picks)) <= 1
        assert len(clump_b & set(picks)) <= 1


def test_coreset_spreads_out_from_the_labeled_items():
    labeled = unit([[1.0, 0.0, 0.0]])
    pool = unit([[1.0, 0.01, 0.0], [0.0, 1.0, 0.0], [0.99, 0.0, 0.02], [-1.0, 0.0, 0.0]])
    probabilities = np.full((4, 2), 0.5)

    picks = query(CoreSet(), probabilities, 2, pool, labeled_embeddings=labeled)

    assert picks == [3, 1]


def test_cold_start_picks_distinct_items_even_when_the_pool_is_all_duplicates():
    embeddings = unit(np.ones((30, 8)))

    picks = cold_start(embeddings, 10, np.random.default_rng(0))

    assert len(set(picks.tolist())) == 10


def test_nearest_to_gives_each_label_description_its_closest_items():
    pool = unit([[1, 0.1], [0.1, 1], [1, 0.2], [0.2, 1], [1, 1]])
    descriptions = unit([[1, 0], [0, 1]])

    assert nearest_to(descriptions, pool, 4).tolist() == [0, 1, 2, 3]
    assert nearest_to(descriptions[0], pool, 2).tolist() == [0, 2]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_returns_distinct_indices_and_is_repeatable(name):
    embeddings = random_embeddings(200)
    probabilities = np.random.default_rng(1).dirichlet(np.ones(3), 200)
    strategy = STRATEGIES[name]()

    first = query(strategy, probabilities, 10, embeddings, labeled_embeddings=embeddings[:5])
    again = query(strategy, probabilities, 10, embeddings, labeled_embeddings=embeddings[:5])
    small_pool = query(strategy, probabilities[:4], 10, embeddings[:4])

    assert first == again
    assert len(set(first)) == 10
    assert all(0 <= index < 200 for index in first)
    assert sorted(small_pool) == [0, 1, 2, 3]


def test_random_strategy_follows_the_generator_seed():
    probabilities = np.full((100, 2), 0.5)
    embeddings = random_embeddings(100)

    def picks(seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        return RandomStrategy().query(probabilities, embeddings, 5, rng).tolist()

    assert picks(1) == picks(1)
    assert picks(1) != picks(2)


def test_default_strategy_queries_a_100k_pool_quickly():
    rng = np.random.default_rng(0)
    embeddings = unit(rng.normal(size=(100_000, 384)))
    probabilities = rng.dirichlet(np.ones(4), 100_000)
    strategy = STRATEGIES[DEFAULT_STRATEGY]()

    started = time.perf_counter()
    picks = rank_pool(probabilities, embeddings, strategy, 25, 25, rng)
    elapsed = time.perf_counter() - started

    assert len(set(picks.tolist())) == 25
    assert elapsed < 1.0
