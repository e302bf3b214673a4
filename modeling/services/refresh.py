"""Keeping a project's model current: embed new items, train, score the pool, refresh the queue.

This runs in Celery workers (see modeling/tasks.py); the web app asks for it through
modeling/scheduling.py and never imports this module, so it never loads torch.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from labeling.consensus import final_labels_by_item
from labeling.models import (
    Annotation,
    Item,
    Label,
    Lease,
    Project,
    QueueEntry,
)
from modeling.core.classifiers import Classifier, HeadClassifier
from modeling.core.encoders import DEFAULT_ENCODER_NAME, TextEncoder
from modeling.core.evaluation import (
    accuracy,
    bootstrap_ci,
    classification_report,
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
from modeling.core.ranking import farthest_first, rank_pool
from modeling.core.stopping import mean_uncertainty, stop_set_hash, stop_set_predictions
from modeling.core.strategies import DEFAULT_STRATEGY, STRATEGIES, cold_start, nearest_to
from modeling.models import EmbeddingChunk, ModelState, ModelVersion, Phase
from modeling.scheduling import announce_promotion, locked_state, request_retrain

log = logging.getLogger(__name__)

CHUNK_SIZE = 512
QUEUE_LENGTH = 1000
COLD_START_LENGTH = 100
# The strategy's diverse batch; beyond this the queue continues by plain uncertainty.
MAX_BATCH = 200
SEEDS_PER_LABEL = 5
# Below this many labeled random-control items a version gets no evaluation, only the count.
MIN_EVALUATION_LABELS = 10
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

Progress = Callable[[int, int], None]


# --- Doing the work (worker side) ----------------------------------------------------------


def refresh_model(project_id: int, run_id: str) -> ModelVersion | None:
    """Embed, train, score and refresh the queue for one project; safe to run twice.

    Only one run per project at a time: a second run that finds the first alive only leaves
    a follow-up request. A redelivered task (same run id, after a worker died) takes over.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None or not _claim(project, run_id):
        return None
    try:
        return _refresh(project)
    except Exception as exc:
        ModelState.objects.filter(project=project).update(last_error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if _release(project):
            request_retrain(project)


def _claim(project: Project, run_id: str) -> bool:
    with transaction.atomic():
        state = locked_state(project)
        if state.is_running() and state.run_id != run_id:
            state.follow_up = True
            state.save(update_fields=["follow_up", "updated_at"])
            return False
        state.running_since = timezone.now()
        state.run_id = run_id
        state.queued_at = None
        state.follow_up = False
        state.last_error = ""
        state.save()
        return True


def _release(project: Project) -> bool:
    with transaction.atomic():
        state = locked_state(project)
        follow_up = state.follow_up
        state.running_since = None
        state.run_id = ""
        state.follow_up = False
        state.phase = Phase.IDLE
        state.save()
        return follow_up


def _set_phase(project: Project, phase: str, done: int = 0, total: int = 0) -> None:
    ModelState.objects.filter(project=project).update(
        phase=phase, progress_done=done, progress_total=total, updated_at=timezone.now()
    )


@dataclass(frozen=True)
class TrainingSet:
    item_ids: list[int]
    targets: npt.NDArray[np.int64]  # class indices, or an (n, n_classes) 0/1 matrix
    class_counts: dict[str, int]

    def counts_in_order(self, labels: list[Label]) -> npt.NDArray[np.float64]:
        """Labeled items per class in the project's label order, for class-balancing strategies."""
        return np.array([self.class_counts.get(label.name, 0) for label in labels], np.float64)


def _refresh(project: Project) -> ModelVersion | None:
    snapshot_at = timezone.now()
    ids, vectors = ensure_embeddings(
        project, lambda done, total: _set_phase(project, Phase.EMBEDDING, done, total)
    )
    labels = list(project.labels.all())
    training = training_set(project, labels)
    pool_ids = np.fromiter(
        Item.objects.filter(project=project, answer_count__lt=project.overlap).values_list(
            "id", flat=True
        ),
        dtype=np.int64,
    )
    pool_rows = np.flatnonzero(np.isin(ids, pool_ids))
    rng = np.random.default_rng(int(snapshot_at.timestamp()))
    if not _can_train(project, training):
        order = _cold_start_order(project, labels, vectors, pool_rows, rng)
        _write_queue(project, ids, order, None, None, labels, snapshot_at)
        return None

    _set_phase(project, Phase.TRAINING)
    started = time.perf_counter()
    labeled_rows = _rows_of(ids, np.array(training.item_ids, dtype=np.int64))
    X, y = vectors[labeled_rows], training.targets
    classifier = HeadClassifier(len(labels), multi_label=project.multi_label).fit(X, y)
    train_seconds = time.perf_counter() - started
    metrics: dict[str, object] = {}
    if not project.multi_label:
        held_out = out_of_fold_probabilities(
            lambda: HeadClassifier(len(labels)), X, y, rng=np.random.default_rng(0)
        )
        if held_out is not None:
            metrics["cv_accuracy"] = float(np.mean(held_out.argmax(axis=1) == y))
            metrics["label_errors"] = [
                [training.item_ids[row], labels[predicted].pk, confidence]
                for row, predicted, confidence in likely_errors(
                    held_out, y, min_confidence=SUSPECT_CONFIDENCE, limit=MAX_LABEL_ERRORS
                )
            ]
    control = evaluation_set(project, labels)
    evaluation = _evaluation(project, labels, classifier, control, ids, vectors)
    metrics["evaluation"] = evaluation
    metrics["labels_saved"] = _labels_saved(
        project, labels, classifier, control, evaluation, len(training.item_ids), ids, vectors
    )
    metrics["stop_set"] = _stop_set(project, classifier, ids, vectors)

    _set_phase(project, Phase.SCORING)
    started = time.perf_counter()
    probabilities = classifier.predict_proba(vectors[pool_rows])
    metrics["pool_uncertainty"] = mean_uncertainty(probabilities, multi_label=project.multi_label)
    strategy = STRATEGIES.get(project.strategy, STRATEGIES[DEFAULT_STRATEGY])()
    counts = training.counts_in_order(labels)
    ranked = rank_pool(
        probabilities,
        vectors[pool_rows],
        strategy,
        batch_size=min(max(2 * project.retrain_every, 20), MAX_BATCH),
        n_ranked=QUEUE_LENGTH,
        rng=rng,
        multi_label=project.multi_label,
        labeled_embeddings=X,
        labeled_counts=counts,
    )
    unseen = {label.pk for label, count in zip(labels, counts, strict=True) if count == 0}
    seeds = _seed_rows(project, labels, unseen, vectors, pool_rows)
    order = _merge(seeds, pool_rows[ranked])
    # Only the queued rows need their probabilities (for the suggestion), not the whole pool.
    by_row = dict(
        zip(order.tolist(), probabilities[np.searchsorted(pool_rows, order)], strict=True)
    )
    score_seconds = time.perf_counter() - started
    return _write_queue(
        project,
        ids,
        order,
        by_row,
        dict(
            kind="head",
            encoder=encoder_name(project),
            strategy=project.strategy,
            labels_used=len(training.item_ids),
            class_counts=training.class_counts,
            pool_size=len(pool_rows),
            train_seconds=train_seconds,
            score_seconds=score_seconds,
            device="cpu",
            metrics=metrics,
        ),
        labels,
        snapshot_at,
    )


def _rows_of(ids: npt.NDArray[np.int64], wanted: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """Rows of `ids` holding each of `wanted`, in the order of `wanted`."""
    sorter = np.argsort(ids, kind="stable")
    return sorter[np.searchsorted(ids, wanted, sorter=sorter)].astype(np.intp)


def _can_train(project: Project, training: TrainingSet) -> bool:
    seen_classes = sum(1 for count in training.class_counts.values() if count)
    needed = 1 if project.multi_label else 2
    return len(training.item_ids) >= 2 and seen_classes >= needed


def training_set(project: Project, labels: list[Label]) -> TrainingSet:
    """Each answered item with its agreed label(s): the majority answer over annotators.

    Random-control items are the evaluation set: they are left out unless the project trains
    on them too.
    """
    answers = Annotation.objects.filter(item__project=project, skipped=False)
    if not project.train_on_control:
        answers = answers.exclude(item__is_random_control=True)
    return _agreed_labels(project, labels, answers)


def evaluation_set(project: Project, labels: list[Label]) -> TrainingSet:
    """The answered random-control items with their agreed label(s)."""
    answers = Annotation.objects.filter(
        item__project=project, item__is_random_control=True, skipped=False
    )
    return _agreed_labels(project, labels, answers)


def _agreed_labels(
    project: Project, labels: list[Label], annotations: QuerySet[Annotation]
) -> TrainingSet:
    """The answered items with their final labels (labeling/consensus.py) as class indices."""
    index = {label.name: i for i, label in enumerate(labels)}
    final = final_labels_by_item(project, annotations)
    item_ids = sorted(final)
    counts: Counter[int] = Counter()
    targets: npt.NDArray[np.int64]
    if project.multi_label:
        targets = np.zeros((len(item_ids), len(labels)), dtype=np.int64)
        for row, item_id in enumerate(item_ids):
            for name in final[item_id]:
                targets[row, index[name]] = 1
                counts[index[name]] += 1
    else:
        targets = np.zeros(len(item_ids), dtype=np.int64)
        for row, item_id in enumerate(item_ids):
            targets[row] = index[final[item_id][0]]
            counts[int(targets[row])] += 1
    return TrainingSet(
        item_ids=item_ids,
        targets=targets,
        class_counts={label.name: counts[i] for i, label in enumerate(labels)},
    )


def _evaluation(
    project: Project,
    labels: list[Label],
    classifier: Classifier,
    control: TrainingSet,
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[Any],
) -> dict[str, object]:
    """The version's quality on the labeled random-control items, with 95% bootstrap intervals.

    `vectors` are what the classifier reads for each of `ids`: embeddings, or texts.
    """
    item_ids = np.array(control.item_ids, dtype=np.int64)
    embedded = np.isin(item_ids, ids)  # an item added since the embedding step waits a run
    n = int(embedded.sum())
    if n < MIN_EVALUATION_LABELS:
        return {"n": n, "note": "too few random-control labels yet"}
    y_true = control.targets[embedded]
    probabilities = classifier.predict_proba(vectors[_rows_of(ids, item_ids[embedded])])
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
        "per_class": _per_class(labels, report.precision, report.recall, report.support),
        "confusion": {
            "labels": [label.name for label in labels],
            "matrix": report.confusion.tolist(),
        },
    }


def _per_class(
    labels: list[Label],
    precision: npt.NDArray[np.float64],
    recall: npt.NDArray[np.float64],
    support: npt.NDArray[np.int64],
) -> dict[str, dict[str, float | int | None]]:
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
) -> dict[str, object]:
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
        "per_class": _per_class(labels, report.precision, report.recall, report.support),
    }


def _labels_saved(
    project: Project,
    labels: list[Label],
    classifier: Classifier,
    control: TrainingSet,
    evaluation: dict[str, object],
    labels_used: int,
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
) -> dict[str, object]:
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
    fitted: dict[str, object] = {}
    if len(item_ids) < MIN_CONTROL_LABELS:
        estimate = too_few_controls(len(item_ids))
    else:
        measured_ids, measured_targets, points = _random_curve(
            project, labels, item_ids, targets, ids, vectors
        )
        X_measured = vectors[_rows_of(ids, measured_ids)]
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
            and np.array_equal(targets[_rows_of(item_ids, kept_ids)], kept_targets)
        ):
            return kept
    points = measure_random_curve(
        vectors[_rows_of(ids, item_ids)],
        targets,
        lambda: HeadClassifier(len(labels)),
        np.random.default_rng(0),
    )
    _measured_curves.pop(key, None)
    while len(_measured_curves) >= MAX_KEPT_CURVES:  # the longest unmeasured goes
        _measured_curves.pop(next(iter(_measured_curves)))
    _measured_curves[key] = (item_ids, targets, points)
    return item_ids, targets, points


def _stop_set(
    project: Project,
    classifier: HeadClassifier,
    ids: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
) -> dict[str, object]:
    """The version's predictions on the fixed stop set: the items with the smallest random keys."""
    stop_ids = np.fromiter(
        Item.objects.filter(project=project)
        .order_by("random_key", "id")
        .values_list("id", flat=True)[:STOP_SET_SIZE],
        dtype=np.int64,
    )
    stop_ids = stop_ids[np.isin(stop_ids, ids)]  # an item added since the embedding step waits
    probabilities = classifier.predict_proba(vectors[_rows_of(ids, stop_ids)])
    return {
        "ids_hash": stop_set_hash(stop_ids),
        "predictions": stop_set_predictions(probabilities, multi_label=project.multi_label),
    }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _cold_start_order(
    project: Project,
    labels: list[Label],
    vectors: npt.NDArray[np.float32],
    pool_rows: npt.NDArray[np.intp],
    rng: np.random.Generator,
) -> npt.NDArray[np.intp]:
    seeds = _seed_rows(project, labels, {label.pk for label in labels}, vectors, pool_rows)
    if len(pool_rows) == 0:
        return seeds
    typical = cold_start(vectors[pool_rows], min(COLD_START_LENGTH, len(pool_rows)), rng)
    typical = typical[farthest_first(vectors[pool_rows][typical])]
    return _merge(seeds, pool_rows[typical])


def _seed_rows(
    project: Project,
    labels: list[Label],
    label_ids: set[int],
    vectors: npt.NDArray[np.float32],
    pool_rows: npt.NDArray[np.intp],
) -> npt.NDArray[np.intp]:
    """Items likely to show labels the model has no example of: keyword hits, then nearest
    items to each label's description."""
    wanted = [label for label in labels if label.pk in label_ids]
    if not wanted or len(pool_rows) == 0:
        return np.array([], dtype=np.intp)
    picks: list[int] = []
    pool_item_rows = {int(r) for r in pool_rows}
    for label in wanted:
        words = [w.strip() for w in label.keywords.split(",") if w.strip()]
        if not words:
            continue
        hits = _keyword_rows(project, words, pool_item_rows)
        picks.extend(hits[:SEEDS_PER_LABEL])
    described = [label for label in wanted if label.description.strip()]
    if described:
        queries = _encoder_for(project).encode([label.description for label in described])
        nearest = nearest_to(queries, vectors[pool_rows], SEEDS_PER_LABEL * len(described))
        picks.extend(int(pool_rows[i]) for i in nearest)
    return np.array(list(dict.fromkeys(picks)), dtype=np.intp)


def _keyword_rows(project: Project, words: list[str], pool_rows: set[int]) -> list[int]:
    ids, _ = load_embeddings(project, encoder_name(project))
    position = {int(item_id): row for row, item_id in enumerate(ids.tolist())}
    query = Item.objects.filter(project=project, answer_count__lt=project.overlap)
    condition = Q()
    for word in words:
        condition |= Q(text__icontains=word)
    matches = query.filter(condition).values_list("id", flat=True)[: SEEDS_PER_LABEL * 4]
    return [position[i] for i in matches if i in position and position[i] in pool_rows]


def _merge(*orders: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    merged = dict.fromkeys(int(row) for order in orders for row in order)
    return np.array(list(merged), dtype=np.intp)


def _write_queue(
    project: Project,
    ids: npt.NDArray[np.int64],
    order: npt.NDArray[np.intp],
    probabilities: dict[int, npt.NDArray[np.floating]] | None,
    version_fields: dict[str, object] | None,
    labels: list[Label],
    snapshot_at: datetime,
) -> ModelVersion | None:
    """Replace the ranked queue, unless a newer model already wrote one (version guard)."""
    with transaction.atomic():
        state = locked_state(project)
        latest = project.model_versions.first()
        if latest is not None and latest.snapshot_at > snapshot_at:
            log.info("Discarding a result for project %s from older labels", project.pk)
            return None
        version = None
        if version_fields is not None:
            version = ModelVersion.objects.create(
                project=project,
                number=(latest.number + 1) if latest else 1,
                snapshot_at=snapshot_at,
                **version_fields,
            )
            announce_promotion(version)
        replace_queue(
            project, state, ids, order, probabilities, version.number if version else 0, labels
        )
    return version


def replace_queue(
    project: Project,
    state: ModelState,
    ids: npt.NDArray[np.int64],
    order: npt.NDArray[np.intp],
    probabilities: dict[int, npt.NDArray[np.floating]] | None,
    version_number: int,
    labels: list[Label],
) -> None:
    """Write the ranked queue in `order`, scored by `version_number`; `state` must be locked."""
    entries = []
    for rank, row in enumerate(order.tolist()):
        suggested: list[int] = []
        confidence = None
        if probabilities is not None and row in probabilities:
            suggested, confidence = _suggestion(probabilities[row], labels, project.multi_label)
        entries.append(
            QueueEntry(
                project=project,
                item_id=int(ids[row]),
                rank=rank,
                score=float(len(order) - rank),
                model_version=version_number,
                suggested_labels=suggested,
                confidence=confidence,
            )
        )
    QueueEntry.objects.filter(project=project).delete()
    QueueEntry.objects.bulk_create(entries, batch_size=1000)
    Lease.objects.filter(project=project, expires_at__lte=timezone.now()).delete()
    state.queue_refreshed_at = timezone.now()
    state.save(update_fields=["queue_refreshed_at", "updated_at"])


def _suggestion(
    probabilities: npt.NDArray[np.floating], labels: list[Label], multi_label: bool
) -> tuple[list[int], float]:
    if multi_label:
        chosen = [labels[i].pk for i, p in enumerate(probabilities) if p >= 0.5]
        certainty = float(np.min(np.maximum(probabilities, 1 - probabilities)))
        return chosen, certainty
    best = int(np.argmax(probabilities))
    return [labels[best].pk], float(probabilities[best])


# --- Embeddings ----------------------------------------------------------------------------


def encoder_name(project: Project) -> str:
    return project.encoder.strip() or DEFAULT_ENCODER_NAME


@lru_cache(maxsize=2)
def _load_encoder(path: str) -> TextEncoder:
    return TextEncoder(Path(path) if path else None)


def _encoder_for(project: Project) -> TextEncoder:
    return _load_encoder(project.encoder.strip())


_cache: dict[tuple[int, str], tuple[frozenset[int], npt.NDArray[np.int64], npt.NDArray[np.float32]]]
_cache = {}


def load_embeddings(
    project: Project, encoder: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """All stored embeddings of the project for one encoder, as (item ids, vectors).

    Chunks already read by this process are kept in memory; only new ones are fetched.
    """
    key = (project.pk, encoder)
    chunk_ids = frozenset(
        EmbeddingChunk.objects.filter(project=project, encoder=encoder).values_list("pk", flat=True)
    )
    cached = _cache.get(key)
    if cached is not None and cached[0] == chunk_ids:
        return cached[1], cached[2]
    known = cached[0] if cached is not None and cached[0] <= chunk_ids else frozenset()
    parts_ids = [cached[1]] if known and cached else []
    parts_vectors = [cached[2]] if known and cached else []
    for chunk in EmbeddingChunk.objects.filter(pk__in=chunk_ids - known).order_by("pk"):
        chunk_item_ids, vectors = chunk.unpack()
        parts_ids.append(chunk_item_ids)
        parts_vectors.append(vectors)
    if parts_ids:
        ids = np.concatenate(parts_ids)
        vectors = np.concatenate(parts_vectors).astype(np.float32, copy=False)
    else:
        ids, vectors = np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    _cache[key] = (chunk_ids, ids, vectors)
    return ids, vectors


def ensure_embeddings(
    project: Project, progress: Progress | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Embed the project's items that have no embedding yet; return those of current items."""
    name = encoder_name(project)
    ids, vectors = load_embeddings(project, name)
    current = list(Item.objects.filter(project=project).values_list("id", flat=True))
    have = set(ids.tolist())
    missing = [item_id for item_id in current if item_id not in have]
    if missing:
        encoder = _encoder_for(project)
        for start in range(0, len(missing), CHUNK_SIZE):
            if progress is not None:
                progress(start, len(missing))
            batch = missing[start : start + CHUNK_SIZE]
            texts = dict(Item.objects.filter(pk__in=batch).values_list("id", "text"))
            batch = [item_id for item_id in batch if item_id in texts]
            if batch:
                embedded = encoder.encode([texts[item_id] for item_id in batch])
                EmbeddingChunk.pack(project, name, batch, embedded).save()
        if progress is not None:
            progress(len(missing), len(missing))
        ids, vectors = load_embeddings(project, name)
    keep = np.isin(ids, np.array(current, dtype=np.int64))
    if not keep.all():
        ids, vectors = ids[keep], vectors[keep]
    return ids, vectors
