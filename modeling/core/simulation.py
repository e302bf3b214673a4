"""Offline active-learning simulation: replay labeling on a dataset whose labels are known.

A simulated annotator labels the items a strategy picks; after every batch the classifier is
retrained and scored on a held-out test set. Comparing the learning curves of strategies shows
how many labels each saves. Arrays in, rows out: nothing here reads files or imports Django.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from modeling.core import evaluation
from modeling.core.classifiers import Classifier, HeadClassifier
from modeling.core.ranking import rank_pool
from modeling.core.strategies import STRATEGIES, RandomStrategy, cold_start

ClassifierFactory = Callable[[int], Classifier]
"""Builds a fresh, untrained classifier for ``n_classes`` classes."""
Embeddings = npt.NDArray[np.floating]
Adaptation = Callable[
    [npt.NDArray[np.intp], npt.NDArray[np.integer], int], tuple[Embeddings, Embeddings] | None
]
"""Called each round with the labeled rows, their labels and the number of classes: new pool
and test embeddings (a fine-tuned encoder's space) to work in from this round on, or None."""

CHECKPOINTS = (125, 275, 525)
"""Label counts reported by :func:`summarize`."""


@dataclass(frozen=True)
class CurvePoint:
    """One point of a learning curve: the model trained on ``labels`` labeled items."""

    labels: int
    """Number of labeled items the model was trained on."""
    accuracy: float
    """Accuracy on the test set."""
    macro_f1: float
    """Mean F1 on the test set over the classes it holds or the model predicts."""
    seconds: float
    """Wall-clock seconds of this round: training plus choosing the next batch."""


class StrategySummary(TypedDict):
    """What :func:`summarize` reports for one strategy, averaged over repeats."""

    auc: float
    final_accuracy: float
    accuracy_at: dict[str, float]
    labels_to_random_final: int | None


def _head_classifier(n_classes: int) -> Classifier:
    return HeadClassifier(n_classes)


def run_simulation(
    train_emb: npt.NDArray[np.floating],
    train_y: npt.NDArray[np.integer],
    test_emb: npt.NDArray[np.floating],
    test_y: npt.NDArray[np.integer],
    n_classes: int,
    strategy_name: str,
    seed_size: int = 25,
    batch_size: int = 25,
    budget: int = 525,
    seed: int = 0,
    classifier_factory: ClassifierFactory = _head_classifier,
    train_inputs: npt.NDArray[Any] | None = None,
    test_inputs: npt.NDArray[Any] | None = None,
    adaptation: Adaptation | None = None,
) -> list[CurvePoint]:
    """Simulate single-label active learning and return the learning curve.

    The first ``seed_size`` items are chosen by :func:`modeling.core.strategies.cold_start` (or
    uniformly at random for the ``random`` strategy, so it stays a true baseline). Then, until
    ``budget`` labels are spent: train a fresh classifier on the labeled items, score it on the
    test set, and let the strategy pick the next ``batch_size`` items from the rest of the
    training pool, whose true labels are then revealed.

    Args:
        train_emb: ``(n_train, dim)`` embeddings of the pool to label.
        train_y: ``(n_train,)`` true class indices of the pool.
        test_emb: ``(n_test, dim)`` embeddings of the held-out test set.
        test_y: ``(n_test,)`` true class indices of the test set.
        n_classes: number of classes.
        strategy_name: a key of :data:`modeling.core.strategies.STRATEGIES`.
        seed_size: labels before the first model is trained.
        batch_size: labels added per round.
        budget: total labels; the last round may be smaller to land on it exactly.
        seed: seeds the one random generator used for the whole run.
        classifier_factory: builds a fresh classifier each round.
        train_inputs: what the classifier consumes for each pool item when that is not the
            embedding (the texts, for a fine-tuned transformer); strategies still see the
            embeddings.
        test_inputs: the same for the test set.
        adaptation: the live loop's fine-tunes (:class:`~modeling.core.finetuning.
            AdaptingFineTunes`): when it hands back embeddings, the classifier, the strategy
            and the test set work in that space from then on.

    Returns:
        One :class:`CurvePoint` per round, at ``seed_size``, ``seed_size + batch_size``, ...
        up to ``min(budget, n_train)`` labels.
    """
    strategy = STRATEGIES[strategy_name]()
    rng = np.random.default_rng(seed)
    train_emb = np.asarray(train_emb)
    train_y = np.asarray(train_y)
    train_x = train_emb if train_inputs is None else np.asarray(train_inputs)
    test_x = test_emb if test_inputs is None else np.asarray(test_inputs)
    pool_size = len(train_emb)
    budget = min(budget, pool_size)
    if strategy_name == "random":
        labeled = rng.choice(pool_size, size=min(seed_size, budget), replace=False)
    else:
        labeled = cold_start(train_emb, min(seed_size, budget), rng)
    is_labeled = np.zeros(pool_size, dtype=bool)
    is_labeled[labeled] = True
    curve: list[CurvePoint] = []
    while True:
        started = time.perf_counter()
        labeled = np.flatnonzero(is_labeled)
        adapted = adaptation(labeled, train_y[labeled], n_classes) if adaptation else None
        if adapted is not None:
            train_emb, test_emb = adapted
            train_x = train_emb if train_inputs is None else train_x
            test_x = test_emb if test_inputs is None else test_x
        classifier = classifier_factory(n_classes).fit(train_x[labeled], train_y[labeled])
        seconds = time.perf_counter() - started
        predictions = classifier.predict_proba(test_x).argmax(axis=1)
        accuracy = evaluation.accuracy(test_y, predictions)
        f1 = evaluation.macro_f1(test_y, predictions, n_classes)
        n_labeled = len(labeled)
        if n_labeled < budget:
            started = time.perf_counter()
            pool = np.flatnonzero(~is_labeled)
            size = min(batch_size, budget - n_labeled)
            # The same ranking the live queue serves from; its first `size` items are the batch.
            # Random never looks at the scores, so the pool is not scored for it.
            probabilities = (
                np.full((len(pool), n_classes), 1.0 / n_classes)
                if isinstance(strategy, RandomStrategy)
                else classifier.predict_proba(train_x[pool])
            )
            picks = rank_pool(
                probabilities,
                train_emb[pool],
                strategy,
                batch_size=size,
                n_ranked=size,
                rng=rng,
                labeled_embeddings=train_emb[labeled],
                labeled_counts=np.bincount(train_y[labeled], minlength=n_classes).astype(
                    np.float64
                ),
            )
            is_labeled[pool[picks]] = True
            seconds += time.perf_counter() - started
        curve.append(CurvePoint(n_labeled, accuracy, f1, seconds))
        if n_labeled >= budget:
            return curve


def summarize(
    curves: Mapping[str, Sequence[Sequence[CurvePoint]]],
    checkpoints: Sequence[int] = CHECKPOINTS,
) -> dict[str, StrategySummary]:
    """Compare strategies by their learning curves, averaged over repeats.

    For each strategy the repeats are averaged label count by label count (only counts present
    in every repeat are kept), giving a mean curve, from which:

    * ``auc``: mean accuracy over the curve's points, i.e. the area under the curve divided by
      its width, so 1.0 is perfect from the first batch;
    * ``final_accuracy``: mean accuracy at the largest label count;
    * ``accuracy_at``: mean accuracy at each of ``checkpoints`` that the curve has, keyed by
      the count as a string (JSON-friendly);
    * ``labels_to_random_final``: the smallest label count at which the mean curve reaches the
      ``random`` strategy's final mean accuracy, or ``None`` if it never does or there is no
      ``random`` entry. A strategy that needs 200 labels where random needed 525 saved 325.

    Args:
        curves: strategy name -> one curve per repeat, as returned by :func:`run_simulation`.
        checkpoints: label counts to report in ``accuracy_at``.
    """
    mean_curves = {name: _mean_accuracy_curve(runs) for name, runs in curves.items()}
    random_final: float | None = None
    if mean_curves.get("random"):
        random_final = mean_curves["random"][max(mean_curves["random"])]
    summary: dict[str, StrategySummary] = {}
    for name, curve in mean_curves.items():
        if not curve:
            continue
        counts = sorted(curve)
        reached = (
            [count for count in counts if curve[count] >= random_final]
            if random_final is not None
            else []
        )
        summary[name] = StrategySummary(
            auc=float(np.mean([curve[count] for count in counts])),
            final_accuracy=curve[counts[-1]],
            accuracy_at={str(count): curve[count] for count in checkpoints if count in curve},
            labels_to_random_final=reached[0] if reached else None,
        )
    return summary


def _mean_accuracy_curve(runs: Sequence[Sequence[CurvePoint]]) -> dict[int, float]:
    """Label count -> accuracy averaged over the runs that all reached that count."""
    if not runs:
        return {}
    common = set.intersection(*({point.labels for point in run} for run in runs))
    return {
        count: float(
            np.mean([point.accuracy for run in runs for point in run if point.labels == count])
        )
        for count in sorted(common)
    }
