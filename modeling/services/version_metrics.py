"""What each model version stores about itself: quality on the random controls, labels saved
against random sampling, the stop set's predictions, and likely label errors."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from labeling.models import Annotation, Item, Label, Project
from modeling.core.classifiers import Classifier, HeadClassifier, choose_C
from modeling.core.evaluation import (
    accuracy,
    bootstrap_ci,
    classification_report,
    confidence_for_precision,
    likely_errors,
    macro_f1,
    multi_label_macro_f1,
    multi_label_report,
    out_of_fold_probabilities,
    subset_accuracy,
)
from modeling.core.labels_saved import (
    MIN_CONTROL_LABELS,
    RandomCurvePoints,
    labels_saved_from_points,
    measure_random_curve,
    too_few_controls,
)
from modeling.core.stopping import stop_set_hash, stop_set_predictions
from modeling.metrics import (
    Evaluation,
    LabelsSaved,
    PerClass,
    StopSet,
    SuggestionFigures,
    Suggestions,
    VersionMetrics,
)
from modeling.services.embeddings import encoder_name
from modeling.services.training_data import TrainingSet, rows_of

# Below this many labeled random-control items a version gets no evaluation, only the count.
MIN_EVALUATION_LABELS = 10
# Annotators see the model's suggestion from the confidence at which suggestions on items
# picked the same way were right at least 4 times in 5, at the lower end of a one-sided 95%
# interval: for items the model picked, the suggestions annotators answered (10 at least);
# for random controls, the version's guesses on the labeled controls. On the four shared
# datasets (bench/suggestions_check.py, README) shown suggestions were right 87-94% of the
# time (3 seeds, and 3 fresh ones), where one threshold from the controls gave 49-95%.
SUGGESTIONS_RIGHT = 0.8
SUGGESTIONS_Z = 1.64
MIN_SUGGESTION_ANSWERS = 10
# Labeled items whose out-of-fold guess contradicts their label this surely are kept for
# review (at most MAX_LABEL_ERRORS per version); the people page applies its own threshold.
SUSPECT_CONFIDENCE = 0.5
MAX_LABEL_ERRORS = 200
# Items every version predicts, so successive versions can be compared (stopping advice).
STOP_SET_SIZE = 1000
# Random sampling's curve is re-measured on the control items (80 small fits) once they have
# grown by this share, or changed; in between, each retrain inverts the kept one.
REMEASURE_GROWTH = 0.1
MAX_KEPT_CURVES = 64


def held_out_probabilities(
    labels: list[Label], training: TrainingSet, X: npt.NDArray[np.float32], C: float
) -> npt.NDArray[np.float64] | None:
    """Each training label's class probabilities from a head that never saw it (5 folds),
    regularized by ``C`` as the version's head is."""
    return out_of_fold_probabilities(
        lambda: HeadClassifier(len(labels), C=C), X, training.targets, rng=np.random.default_rng(0)
    )


def cross_validation(
    labels: list[Label],
    training: TrainingSet,
    held_out: npt.NDArray[np.float64] | None,
) -> VersionMetrics:
    """Out-of-fold accuracy on the training labels, and the labels it most surely contradicts."""
    if held_out is None:
        return {}
    y = training.targets
    return {
        "cv_accuracy": accuracy(y, held_out.argmax(axis=1)),
        "label_errors": [
            [training.item_ids[row], labels[predicted].pk, confidence]
            for row, predicted, confidence in likely_errors(
                held_out, y, min_confidence=SUSPECT_CONFIDENCE, limit=MAX_LABEL_ERRORS
            )
        ],
    }


def evaluation(
    project: Project,
    labels: list[Label],
    classifier: Classifier,
    control: TrainingSet,
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[Any],
) -> Evaluation:
    """The version's quality on the labeled random-control items, with 95% bootstrap intervals.

    `vectors` are what the classifier reads for each of `ids`: embeddings, or texts.
    """
    item_ids = np.array(control.item_ids, dtype=np.int64)
    embedded = np.isin(item_ids, ids)  # an item added since the embedding step waits a run
    n = int(embedded.sum())
    if n < MIN_EVALUATION_LABELS:
        return {"n": n, "note": "too few random-control labels yet"}
    y_true = control.targets[embedded]
    probabilities = classifier.predict_proba(vectors[rows_of(ids, item_ids[embedded])])
    if project.multi_label:
        y_chosen = (probabilities >= 0.5).astype(np.int64)
        return _multi_label_evaluation(project, labels, y_true, y_chosen)
    y_pred = probabilities.argmax(axis=1)
    report = classification_report(y_true, y_pred, len(labels))
    f1 = partial(macro_f1, n_classes=len(labels))
    rng = np.random.default_rng(0)
    return {
        "n": n,
        # Trained on its own evaluation set, the model's scores are optimistic.
        "trained_on_control": project.train_on_control,
        "accuracy": report.accuracy,
        "accuracy_ci": list(bootstrap_ci(y_true, y_pred, accuracy, rng)),
        "macro_f1": report.macro_f1,
        "macro_f1_ci": list(bootstrap_ci(y_true, y_pred, f1, rng)),
        "per_class": per_class(labels, report.precision, report.recall, report.support),
        "confusion": {
            "labels": [label.name for label in labels],
            "matrix": report.confusion.tolist(),
        },
        # From which confidence random controls are shown this model's suggestion.
        "suggest_above": confidence_for_precision(
            probabilities.max(axis=1),
            y_pred == y_true,
            target=SUGGESTIONS_RIGHT,
            min_items=MIN_EVALUATION_LABELS,
            z=SUGGESTIONS_Z,
        ),
    }


def suggestion_thresholds(project: Project, evaluation: Evaluation) -> Suggestions:
    """Per way of picking items, the confidence from which annotators are shown suggestions,
    and how often the shown ones were right in the answers so far.

    For items the model picked, the threshold is measured on the suggestions annotators
    answered on such items; for random controls, on this version's own guesses for the
    labeled controls (the evaluation), which are the same kind of item.
    """
    answered: dict[bool, list[tuple[float, bool, bool]]] = {False: [], True: []}
    rows = Annotation.objects.filter(
        item__project=project, skipped=False, suggestion_confidence__isnull=False
    ).values_list(
        "suggestion_confidence",
        "suggested_labels",
        "labels",
        "item__is_random_control",
        "suggestion_shown",
    )
    for confidence, suggested, label, control, shown in rows:
        answered[control].append((float(confidence or 0), suggested == [label], shown))
    picked = answered[False]
    return {
        "picked": _suggestion_figures(
            picked,
            confidence_for_precision(
                np.array([c for c, _, _ in picked], dtype=np.float64),
                np.array([r for _, r, _ in picked], dtype=bool),
                target=SUGGESTIONS_RIGHT,
                min_items=MIN_SUGGESTION_ANSWERS,
                z=SUGGESTIONS_Z,
            ),
        ),
        "controls": _suggestion_figures(answered[True], evaluation.get("suggest_above")),
    }


def _suggestion_figures(
    answers: list[tuple[float, bool, bool]], threshold: float | None
) -> SuggestionFigures:
    right = np.array([r for _, r, _ in answers], dtype=bool)
    shown = np.array([s for _, _, s in answers], dtype=bool)
    return {
        "threshold": threshold,
        "answers": len(answers),
        "shown": int(shown.sum()),
        "shown_right": float(right[shown].mean()) if shown.any() else None,
    }


def per_class(
    labels: list[Label],
    precision: npt.NDArray[np.float64],
    recall: npt.NDArray[np.float64],
    support: npt.NDArray[np.int64],
) -> dict[str, PerClass]:
    return {
        label.name: {
            "precision": _finite_or_none(precision[i]),
            "recall": _finite_or_none(recall[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }


def _multi_label_evaluation(
    project: Project,
    labels: list[Label],
    y_true: npt.NDArray[np.int64],
    y_pred: npt.NDArray[np.int64],
) -> Evaluation:
    """Multi-label quality: "accuracy" is the share of items with exactly the right labels."""
    report = multi_label_report(y_true, y_pred)
    rng = np.random.default_rng(0)
    return {
        "n": len(y_true),
        "trained_on_control": project.train_on_control,
        "accuracy": report.subset_accuracy,
        "accuracy_ci": list(bootstrap_ci(y_true, y_pred, subset_accuracy, rng)),
        "macro_f1": report.macro_f1,
        "macro_f1_ci": list(bootstrap_ci(y_true, y_pred, multi_label_macro_f1, rng)),
        "micro_f1": report.micro_f1,
        "per_class": per_class(labels, report.precision, report.recall, report.support),
    }


def labels_saved(
    project: Project,
    labels: list[Label],
    classifier: Classifier,
    control: TrainingSet,
    evaluation: Evaluation,
    labels_used: int,
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
) -> LabelsSaved:
    """Labels saved against random sampling, or why there is no estimate yet."""
    if project.multi_label:
        return {"reason": "not available for multi-label projects yet"}
    if project.train_on_control:
        return {"reason": "the model also trains on the random-control items: no fair baseline"}
    if not isinstance(evaluation.get("accuracy"), float):
        return {"reason": "too few random-control labels yet"}
    item_ids = np.array(control.item_ids, dtype=np.int64)
    embedded = np.isin(item_ids, ids)
    item_ids, targets = item_ids[embedded], control.targets[embedded]
    fitted: LabelsSaved = {}
    if len(item_ids) < MIN_CONTROL_LABELS:
        estimate = too_few_controls(len(item_ids))
    else:
        measured_ids, measured_targets, points = _random_curve(
            project, labels, item_ids, targets, ids, vectors
        )
        X_measured = vectors[rows_of(ids, measured_ids)]
        estimate = labels_saved_from_points(
            points,
            classifier.predict_proba(X_measured).argmax(axis=1) == measured_targets,
            labels_used,
            np.random.default_rng(0),
        )
        # The controls random sampling's curve was measured on: it is kept for a few retrains.
        fitted["measured_on"] = points.n
    if (curve := estimate.curve) is not None:
        # Random sampling's learning curve, for the report's chart beside the real one.
        fitted["random_curve"] = {**curve.as_json(), "up_to": estimate.trusted_up_to}
    if estimate.low is None:
        return {"reason": estimate.reason, **fitted}
    return {
        "estimate": estimate.estimate,
        "low": estimate.low,
        "high": estimate.high,
        "at_least": estimate.at_least,
        "note": estimate.note,
        **fitted,
    }


# Per project, encoder and number of classes: the control items random sampling's curve was
# last measured on (ids, class indices) and the curve. Kept by the worker process.
_measured_curves: dict[
    tuple[int, str, int], tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], RandomCurvePoints]
] = {}


def _random_curve(
    project: Project,
    labels: list[Label],
    item_ids: npt.NDArray[np.int64],
    targets: npt.NDArray[np.int64],
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], RandomCurvePoints]:
    """Random sampling's curve on the control items ``item_ids`` (class indices ``targets``),
    with the items it was measured on and their class indices.

    The curve measured at an earlier retrain is kept while its items are all still controls
    with the same labels and the controls have grown by less than ``REMEASURE_GROWTH``: a few
    more uniform draws hardly move it, and measuring trains 80 classifiers.
    """
    key = (project.pk, encoder_name(project), len(labels))
    kept = _measured_curves.get(key)
    if kept is not None:
        kept_ids, kept_targets, _ = kept
        if (
            len(item_ids) < len(kept_ids) * (1 + REMEASURE_GROWTH)
            and np.isin(kept_ids, item_ids).all()
            and np.array_equal(targets[rows_of(item_ids, kept_ids)], kept_targets)
        ):
            return kept
    X = vectors[rows_of(ids, item_ids)]
    # One regularization for the whole curve, chosen on all its items: 80 fits stay 80.
    C = choose_C(X, targets, len(labels))
    points = measure_random_curve(
        X, targets, lambda: HeadClassifier(len(labels), C=C), np.random.default_rng(0)
    )
    _measured_curves.pop(key, None)
    while len(_measured_curves) >= MAX_KEPT_CURVES:  # the longest unmeasured goes
        _measured_curves.pop(next(iter(_measured_curves)))
    _measured_curves[key] = (item_ids, targets, points)
    return item_ids, targets, points


def stop_set(
    project: Project,
    classifier: HeadClassifier,
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
) -> StopSet:
    """The version's predictions on the fixed stop set: the items with the smallest random keys."""
    stop_ids = np.fromiter(
        Item.objects.filter(project=project)
        .order_by("random_key", "id")
        .values_list("id", flat=True)[:STOP_SET_SIZE],
        dtype=np.int64,
    )
    stop_ids = stop_ids[np.isin(stop_ids, ids)]  # an item added since the embedding step waits
    probabilities = classifier.predict_proba(vectors[rows_of(ids, stop_ids)])
    return {
        "ids_hash": stop_set_hash(stop_ids),
        "predictions": stop_set_predictions(probabilities, multi_label=project.multi_label),
    }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
