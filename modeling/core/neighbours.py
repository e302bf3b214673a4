"""Nearest neighbours by cosine similarity, for search by meaning and "more like this"."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def nearest_rows(
    vectors: npt.NDArray[np.float32],
    query: npt.NDArray[np.floating],
    k: int,
    *,
    exclude: int | None = None,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """The ``k`` rows of ``vectors`` closest to ``query``, closest first, and their cosines.

    Args:
        vectors: ``(n, dim)`` rows of unit length.
        query: ``(dim,)``; scaled to unit length here.
        k: how many to return (fewer when there are fewer rows).
        exclude: a row left out (the item a "more like this" started from).
    """
    if len(vectors) == 0 or k <= 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float32)
    unit = np.asarray(query, dtype=np.float32)
    unit = unit / max(float(np.linalg.norm(unit)), 1e-12)
    similarity = vectors @ unit
    if exclude is not None:
        similarity[exclude] = -np.inf
    k = min(k, len(vectors) - (exclude is not None))
    if k <= 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float32)
    rows = np.argpartition(-similarity, k - 1)[:k] if k < len(vectors) else np.arange(k)
    rows = rows[np.argsort(-similarity[rows], kind="stable")]
    return rows.astype(np.intp), similarity[rows].astype(np.float32)
