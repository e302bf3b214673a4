"""Chance-corrected agreement between annotators on nominal categories (numpy only).

Categories may be any hashable values (label names, tuples of names for multi-label
answers); they are only compared for equality.

Both measures are ``1 - observed disagreement / disagreement expected by chance``. When the
raters used a single category throughout, chance already predicts every answer, so the ratio
is 0/0. Both functions then return 1.0: every pair of ratings agrees, and a caller showing
"perfect agreement" is less surprising than one showing NaN. Callers who need to tell this
case apart can check whether more than one category occurs.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters who each rated the same items, in the same order.

    ``kappa = (p_o - p_e) / (1 - p_e)``, where ``p_o`` is the share of items both gave the
    same category and ``p_e`` the share expected if each rater picked categories at random
    with their own observed frequencies. 1 is perfect agreement, 0 is chance level, and
    negative values are worse than chance.

    Returns 1.0 when ``p_e`` is 1, which happens only when both raters gave one and the
    same category to every item (so ``p_o`` is 1 too). Raises ValueError when the sequences
    differ in length or are empty.

    Written out rather than ``sklearn.metrics.cohen_kappa_score``, which gives the same
    numbers but measured 4 to 28 times slower (1,000 stop-set predictions: 3.6 ms against
    0.6 ms; 20 to 2,000 annotator answers: 2.6-3.7 ms against 0.1-0.9 ms) and cannot take
    tuple categories without this encoding first.
    """
    if len(a) != len(b):
        raise ValueError(f"Both raters must rate the same items ({len(a)} != {len(b)}).")
    if not a:
        raise ValueError("Kappa needs at least one item.")
    codes = _encode([*a, *b])
    first, second = codes[: len(a)], codes[len(a) :]
    categories = int(codes.max()) + 1
    table = np.zeros((categories, categories))
    np.add.at(table, (first, second), 1)
    table /= len(a)
    observed = float(np.trace(table))
    expected = float(table.sum(axis=1) @ table.sum(axis=0))
    if np.isclose(expected, 1.0):
        return 1.0
    return (observed - expected) / (1.0 - expected)


def krippendorff_alpha(units: Iterable[Sequence[Hashable]]) -> float:
    """Krippendorff's alpha for nominal data from any number of raters, missing ratings allowed.

    ``units`` holds, for each item, the categories its raters gave (one entry per rating;
    raters who did not rate the item are simply absent). Items with fewer than two ratings
    cannot be paired and are ignored.

    Every ordered pair of ratings within an item adds ``1 / (m - 1)`` to the coincidence
    matrix ``o``, where ``m`` is that item's number of ratings; ``n_c`` are its row sums and
    ``n`` their total. Then ``alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k``.
    1 is perfect agreement and 0 chance level.

    Returns 1.0 when only one category occurs among the paired ratings (no disagreement is
    possible). Raises ValueError when no item has two ratings.
    """
    pairable = [list(unit) for unit in units if len(unit) >= 2]
    if not pairable:
        raise ValueError("Alpha needs at least one item with two or more ratings.")
    codes = _encode([value for unit in pairable for value in unit])
    categories = int(codes.max()) + 1
    coincidences = np.zeros((categories, categories))
    start = 0
    for unit in pairable:
        m = len(unit)
        counts = np.bincount(codes[start : start + m], minlength=categories).astype(float)
        start += m
        # Ordered pairs of distinct ratings: n_c * n_k off the diagonal, n_c * (n_c - 1) on it.
        coincidences += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    totals = coincidences.sum(axis=1)
    n = totals.sum()
    observed_off_diagonal = coincidences.sum() - np.trace(coincidences)
    expected_off_diagonal = n * n - float(totals @ totals)
    if np.isclose(expected_off_diagonal, 0.0):
        return 1.0
    return float(1.0 - (n - 1) * observed_off_diagonal / expected_off_diagonal)


def _encode(values: Sequence[Hashable]) -> np.ndarray:
    """Integer codes 0..k-1 for the values, in order of first appearance."""
    index: dict[Hashable, int] = {}
    return np.array([index.setdefault(value, len(index)) for value in values], dtype=np.intp)
