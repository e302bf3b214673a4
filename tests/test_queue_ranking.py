"""One ranking path: head retrains and fine-tuned re-scoring put the same items first."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from django.contrib.auth.models import User

from labeling.models import Item, Project
from modeling.core.strategies import MarginStrategy
from modeling.services.queue_ranking import rank_queue
from modeling.services.training_data import pool_rows, training_set
from tests.conftest import label


class RecordingMargin(MarginStrategy):
    """Margin sampling that remembers which items it was told are labeled."""

    labeled: npt.NDArray[np.float32] | None = None

    def query(self, *args: Any, **kwargs: Any) -> npt.NDArray[np.intp]:
        self.labeled = kwargs.get("labeled_embeddings")
        return super().query(*args, **kwargs)


def embedded(project: Project) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    ids = np.array(sorted(project.items.values_list("pk", flat=True)), dtype=np.int64)
    vectors = np.random.default_rng(0).normal(size=(len(ids), 8)).astype(np.float32)
    return ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_label_nobody_used_yet_gets_its_keyword_items_first(topics: Project, bob: User) -> None:
    topics.labels.create(name="weather", keywords="rain, storm")
    rainy = Item.objects.create(project=topics, text="rain all weekend", content_hash="rain")
    for item in topics.items.exclude(pk=rainy.pk).order_by("pk")[:6]:
        label(topics, bob, item, "sports" if "match" in item.text else "finance")
    labels = list(topics.labels.all())
    ids, vectors = embedded(topics)
    pool = pool_rows(topics, ids)
    probabilities = np.full((len(pool), len(labels)), 1 / len(labels))

    ranked = rank_queue(
        topics,
        labels,
        ids,
        vectors,
        pool,
        probabilities,
        training_set(topics, labels),
        np.random.default_rng(0),
        MarginStrategy(),
    )

    assert int(ids[ranked.order[0]]) == rainy.pk
    assert len(ranked.order) == len(pool)
    assert set(ranked.probabilities) == set(ranked.order.tolist())


def test_random_controls_never_count_as_labeled_for_the_strategy(
    topics: Project, bob: User
) -> None:
    items = list(topics.items.order_by("pk"))
    for item in items[:4]:
        label(topics, bob, item, "sports" if "match" in item.text else "finance")
    for item in items[4:7]:
        Item.objects.filter(pk=item.pk).update(is_random_control=True)
        label(topics, bob, item, "sports" if "match" in item.text else "finance")
    labels = list(topics.labels.all())
    ids, vectors = embedded(topics)
    pool = pool_rows(topics, ids)
    strategy = RecordingMargin()

    rank_queue(
        topics,
        labels,
        ids,
        vectors,
        pool,
        np.full((len(pool), 2), 0.5),
        training_set(topics, labels),
        np.random.default_rng(0),
        strategy,
    )

    assert strategy.labeled is not None
    assert len(strategy.labeled) == 4
