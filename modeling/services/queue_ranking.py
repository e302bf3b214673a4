"""The one ranking path: what annotators see next, for head retrains and fine-tuned re-scoring
alike. Seed items for labels with no example come first, then the strategy's pick and the
pool by uncertainty; before any model, typical items of the embedding space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from django.db.models import Q

from labeling.models import Item, Label, Project
from modeling.core.ranking import farthest_first, rank_pool
from modeling.core.strategies import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    QueryStrategy,
    cold_start,
    nearest_to,
)
from modeling.services.embeddings import encoder_for
from modeling.services.training_data import TrainingSet, rows_of

QUEUE_LENGTH = 1000
COLD_START_LENGTH = 100
# The strategy's diverse batch; beyond this the queue continues by plain uncertainty.
MAX_BATCH = 200
SEEDS_PER_LABEL = 5


@dataclass(frozen=True)
class RankedQueue:
    order: npt.NDArray[np.intp]  # rows of the embeddings' ids, first served first
    probabilities: dict[int, npt.NDArray[np.floating]]  # by row, for the suggestion shown


def strategy_for(project: Project) -> QueryStrategy:
    """The project's strategy, or the default when its name is unknown."""
    return STRATEGIES.get(project.strategy, STRATEGIES[DEFAULT_STRATEGY])()


def rank_queue(
    project: Project,
    labels: list[Label],
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
    pool_rows: npt.NDArray[np.intp],
    probabilities: npt.NDArray[np.floating],
    training: TrainingSet,
    rng: np.random.Generator,
    strategy: QueryStrategy | None = None,
) -> RankedQueue:
    """Rank the pool (`pool_rows` of `ids`, sorted) by a model's `probabilities` over it.

    The strategy sees the training items as the labeled set (random controls only when the
    project trains on them: they never steer selection otherwise).
    """
    labeled_ids = np.array(training.item_ids, dtype=np.int64)
    labeled_rows = rows_of(ids, labeled_ids[np.isin(labeled_ids, ids)])
    counts = training.counts_in_order(labels)
    ranked = rank_pool(
        probabilities,
        vectors[pool_rows],
        strategy or strategy_for(project),
        batch_size=min(max(2 * project.retrain_every, 20), MAX_BATCH),
        n_ranked=QUEUE_LENGTH,
        rng=rng,
        multi_label=project.multi_label,
        labeled_embeddings=vectors[labeled_rows],
        labeled_counts=counts,
    )
    unseen = {label.pk for label, count in zip(labels, counts, strict=True) if count == 0}
    order = _merge(_seed_rows(project, labels, unseen, ids, vectors, pool_rows), pool_rows[ranked])
    # Only the queued rows need their probabilities (for the suggestion), not the whole pool.
    by_row = dict(
        zip(order.tolist(), probabilities[np.searchsorted(pool_rows, order)], strict=True)
    )
    return RankedQueue(order, by_row)


def cold_start_order(
    project: Project,
    labels: list[Label],
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
    pool_rows: npt.NDArray[np.intp],
    rng: np.random.Generator,
) -> npt.NDArray[np.intp]:
    """Before any model: seed items for every label, then typical items of spread clusters."""
    seeds = _seed_rows(project, labels, {label.pk for label in labels}, ids, vectors, pool_rows)
    if len(pool_rows) == 0:
        return seeds
    typical = cold_start(vectors[pool_rows], min(COLD_START_LENGTH, len(pool_rows)), rng)
    typical = typical[farthest_first(vectors[pool_rows][typical])]
    return _merge(seeds, pool_rows[typical])


def _seed_rows(
    project: Project,
    labels: list[Label],
    label_ids: set[int],
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
    pool_rows: npt.NDArray[np.intp],
) -> npt.NDArray[np.intp]:
    """Items likely to show labels the model has no example of: keyword hits, then nearest
    items to each label's description."""
    wanted = [label for label in labels if label.pk in label_ids]
    if not wanted or len(pool_rows) == 0:
        return np.array([], dtype=np.intp)
    picks: list[int] = []
    for label in wanted:
        words = [w.strip() for w in label.keywords.split(",") if w.strip()]
        if words:
            picks.extend(_keyword_rows(project, words, ids, pool_rows)[:SEEDS_PER_LABEL])
    described = [label for label in wanted if label.description.strip()]
    if described:
        queries = encoder_for(project).encode([label.description for label in described])
        nearest = nearest_to(queries, vectors[pool_rows], SEEDS_PER_LABEL * len(described))
        picks.extend(int(pool_rows[i]) for i in nearest)
    return np.array(list(dict.fromkeys(picks)), dtype=np.intp)


def _keyword_rows(
    project: Project, words: list[str], ids: npt.NDArray[np.int64], pool_rows: npt.NDArray[np.intp]
) -> list[int]:
    condition = Q()
    for word in words:
        condition |= Q(text__icontains=word)
    query = Item.objects.filter(condition, project=project, answer_count__lt=project.overlap)
    matches = np.fromiter(query.values_list("id", flat=True)[: SEEDS_PER_LABEL * 4], dtype=np.int64)
    rows = rows_of(ids, matches[np.isin(matches, ids)])
    return [int(row) for row in rows[np.isin(rows, pool_rows)]]


def _merge(*orders: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    merged = dict.fromkeys(int(row) for order in orders for row in order)
    return np.array(list(merged), dtype=np.intp)
