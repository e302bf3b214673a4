"""Cutting a pool into shards of about equal work, for workers that score them side by side.

Plain numpy, no Django: the rescoring service passes each item's cost (its text's length).
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

COST_CAP = 600
"""Characters past this cost nothing more: the encoder truncates its input (128 tokens)."""
ITEM_COST = 40
"""What every item costs whatever its length (a row read, a vector written), in characters."""


def balanced_slices(lengths: npt.ArrayLike, parts: int) -> list[slice]:
    """``parts`` consecutive, non-empty slices of the items, each with about the same total
    cost, where an item costs ``ITEM_COST`` plus its length up to ``COST_CAP``.

    Cut by count alone, a shard of long news articles takes four times as long to embed as one
    of short chat messages, and the worker that drew it holds the queue back.
    """
    costs = ITEM_COST + np.minimum(np.asarray(lengths, dtype=np.int64), COST_CAP)
    n = len(costs)
    parts = max(1, min(parts, n))
    total = np.cumsum(costs)
    targets = total[-1] * np.arange(1, parts) / parts if n else np.zeros(0)
    after = np.searchsorted(total, targets, side="left")  # first item reaching the target
    before = np.maximum(after - 1, 0)
    # Cut after that item, or before it when that lands nearer the target.
    nearer_before = (after > 0) & (targets - total[before] < total[after] - targets)
    cuts = np.where(nearer_before, after, after + 1)
    bounds = [0]
    for index, cut in enumerate(cuts.tolist()):
        # Each slice keeps at least one item, and leaves one for every slice after it.
        bounds.append(min(max(cut, bounds[-1] + 1), n - (parts - 1 - index)))
    bounds.append(n)
    return [slice(start, end) for start, end in itertools.pairwise(bounds)]
