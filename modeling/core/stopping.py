"""When to stop labeling: stabilizing predictions on a fixed stop set (no Django here).

Each model version predicts the same fixed set of items, the stop set. When successive
versions agree almost perfectly (Cohen's kappa), more labels are unlikely to change the model
much (Bloodgood and Vijay-Shanker, 2009). The pool's mean uncertainty is reported alongside as
a second view of how settled the model is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from modeling.core.agreement import cohen_kappa

# Agreement between successive versions that counts as "stable".
KAPPA_THRESHOLD = 0.99
# How many successive stable comparisons (so one more version) before advising a stop.
STABLE_RUN = 3
KEEP_LABELING = "keep labeling"
CONSIDER_STOPPING = "consider stopping"


@dataclass(frozen=True)
class StopSetPredictions:
    """One version's predictions on the stop set."""

    number: int  # the version number, for the reason shown to the lead
    predictions: Sequence[int]  # a class index (multi-label: a bitmask of labels) per item
    ids_hash: str  # identifies the stop set; only versions on the same set are compared
    pool_uncertainty: float | None  # mean uncertainty on the unlabeled pool, 0 = certain

    @classmethod
    def from_metrics(cls, number: int, metrics: Mapping[str, object]) -> StopSetPredictions | None:
        """Read what a version stored in its metrics; None when it stored no stop set."""
        stop_set = metrics.get("stop_set")
        if not isinstance(stop_set, dict):
            return None
        uncertainty = metrics.get("pool_uncertainty")
        return cls(
            number=number,
            predictions=stop_set["predictions"],
            ids_hash=stop_set["ids_hash"],
            pool_uncertainty=float(uncertainty) if isinstance(uncertainty, int | float) else None,
        )


@dataclass(frozen=True)
class Advice:
    decision: str  # KEEP_LABELING or CONSIDER_STOPPING
    reason: str
    kappas: list[float]  # between successive compared versions, oldest pair first
    stable: int = 0  # the latest versions in a row that are stable, at most STABLE_RUN


def stop_set_hash(item_ids: npt.NDArray[np.int64]) -> str:
    """A short fingerprint of the stop set's item ids, in their order."""
    return hashlib.sha1(np.asarray(item_ids, dtype="<i8").tobytes()).hexdigest()[:16]


def stop_set_predictions(
    probabilities: npt.NDArray[np.floating], *, multi_label: bool = False
) -> list[int]:
    """Predicted class index per row; for multi-label, the chosen labels as a bitmask."""
    if not multi_label:
        return [int(i) for i in np.argmax(probabilities, axis=1)]
    chosen = np.asarray(probabilities) >= 0.5
    return [sum(1 << int(j) for j in np.flatnonzero(row)) for row in chosen]


def mean_uncertainty(
    probabilities: npt.NDArray[np.floating], *, multi_label: bool = False
) -> float | None:
    """Mean of ``1 - confidence`` over the rows; None for no rows.

    Single-label confidence is the top class's probability; multi-label confidence is that of
    the least certain label, ``min_j max(p_j, 1 - p_j)``, as for the queue's suggestions.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if len(p) == 0:
        return None
    confidence = np.min(np.maximum(p, 1 - p), axis=1) if multi_label else np.max(p, axis=1)
    return float(np.mean(1.0 - confidence))


def stopping_advice(versions: Sequence[StopSetPredictions | None]) -> Advice:
    """Advise whether to keep labeling, from the latest versions' stop-set predictions.

    A version is stable when its stop-set predictions agree with the version before's with
    Cohen's kappa of at least ``KAPPA_THRESHOLD``. "Consider stopping" once the last
    ``STABLE_RUN`` versions in a row are stable; otherwise "keep labeling". The reason says how
    many stable versions there are of those needed, and which version last changed its
    predictions. Only versions that predicted the same stop set are compared (importing items
    can change it), so a change of stop set starts the count again.

    Args:
        versions: stop-set predictions of successive versions, oldest first; None for a
            version that stored none, which also starts the count again.
    """
    run: list[StopSetPredictions] = []
    new_stop_set = False
    for version in reversed(versions):
        if version is None or len(run) == STABLE_RUN + 1:
            break
        if run and version.ids_hash != run[-1].ids_hash:
            new_stop_set = True
            break
        run.append(version)
    run.reverse()
    pairs = list(pairwise(run))
    kappas = [cohen_kappa(old.predictions, new.predictions) for old, new in pairs]
    stable = 0
    for kappa in reversed(kappas):
        if kappa < KAPPA_THRESHOLD:
            break
        stable += 1
    decision = CONSIDER_STOPPING if stable >= STABLE_RUN else KEEP_LABELING
    reason = (
        f"{stable} of {STABLE_RUN} stable versions in a row (predictions on the stop set agree "
        f"with the version before, kappa ≥ {KAPPA_THRESHOLD:g})"
    )
    if not run:
        reason += "; no version has predicted the stop set yet"
    elif stable == STABLE_RUN:
        reason += f": v{run[1].number} to v{run[-1].number}"
    elif stable < len(kappas):
        (old, new), kappa = pairs[-1 - stable], kappas[-1 - stable]
        reason += f"; v{new.number} changed predictions from v{old.number} (kappa {kappa:.2f})"
    elif new_stop_set:
        reason += f"; the stop set changed at v{run[0].number}, so the count started again"
    elif len(run) == 1:
        reason += f"; v{run[0].number} is the first version to predict it"
    return Advice(decision, reason + _uncertainty_note(run), kappas, stable)


def _uncertainty_note(run: list[StopSetPredictions]) -> str:
    if not run or run[-1].pool_uncertainty is None:
        return ""
    first, last = run[0].pool_uncertainty, run[-1].pool_uncertainty
    note = f"; mean uncertainty on unlabeled items {last:.2f}"
    if first is not None and len(run) > 1:
        note += f" (v{run[0].number}: {first:.2f})"
    return note + ", 0 is certain"
