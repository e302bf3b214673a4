"""A pool is cut into shards of about equal work, so workers scoring them side by side finish
together: long news articles and short chat messages in one project, say."""

from __future__ import annotations

import itertools

import numpy as np

from modeling.core.sharding import COST_CAP, ITEM_COST, balanced_slices


def costs_of(lengths: list[int], parts: list[slice]) -> list[int]:
    capped = ITEM_COST + np.minimum(np.asarray(lengths), COST_CAP)
    return [int(capped[part].sum()) for part in parts]


def test_shards_of_long_and_short_texts_take_about_the_same_work() -> None:
    lengths = [500] * 5000 + [60] * 15000  # articles, then chat messages

    parts = balanced_slices(lengths, 4)

    assert len(parts) == 4
    assert parts[0].start == 0
    assert parts[-1].stop == len(lengths)
    assert all(a.stop == b.start for a, b in itertools.pairwise(parts))
    costs = costs_of(lengths, parts)
    assert max(costs) - min(costs) <= ITEM_COST + COST_CAP  # at most one item apart
    # Cut by count, the first shard (all 5,000 articles) would be 4.5 times the last; cut by
    # work, the articles fill more than two shards and the messages the rest.
    assert parts[1].stop < 5000 < parts[2].stop


def test_equal_texts_make_equal_shards_and_every_shard_has_an_item() -> None:
    assert [p.stop - p.start for p in balanced_slices([100] * 60, 4)] == [15, 15, 15, 15]
    few = balanced_slices([5000, 5000, 1, 1, 1], 4)
    assert [p.stop - p.start for p in few] == [1, 1, 1, 2]
    assert balanced_slices([7, 7], 5) == [slice(0, 1), slice(1, 2)]
