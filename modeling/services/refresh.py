"""A head retrain: embed new items, train the head, measure it, score the pool, write the queue.

Runs in Celery workers (modeling/tasks.py).
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
from django.utils import timezone

from labeling.models import Project
from modeling.core.classifiers import HeadClassifier
from modeling.core.stopping import mean_uncertainty
from modeling.metrics import VersionMetrics
from modeling.models import FineTuneRun, ModelState, ModelVersion, Phase
from modeling.services import version_metrics
from modeling.services.embeddings import encoder_name, ensure_embeddings
from modeling.services.heartbeat import Heartbeat
from modeling.services.predictions import store_predictions
from modeling.services.queue_ranking import cold_start_order, rank_queue
from modeling.services.queue_writer import write_head_version
from modeling.services.training_data import evaluation_set, pool_rows, rows_of, training_set


def refresh_model(project_id: int, run_id: str) -> ModelVersion | None:
    """Embed, train, score and refresh the queue for one project; safe to run twice.

    Returns the new version; None when there is no model yet (the queue then starts cold), a
    result from newer labels won, or another run was alive. One run per project at a time: a
    second run that finds the first alive only leaves a follow-up request, which the first
    sends when it ends. The run's heartbeat marks it alive; a redelivered or resent task (same
    run id) takes over once its worker has gone quiet.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None or not ModelState.objects.claim(project, run_id):
        return None
    beat = Heartbeat(
        partial(ModelState.objects.beat, project.pk, run_id), name=f"retrain-heartbeat-{run_id}"
    )
    try:
        with beat:
            return _refresh(project)
    except Exception as exc:
        ModelState.objects.filter(project=project).update(last_error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if ModelState.objects.release(project, run_id):
            ModelState.objects.send_retrain(project.pk)


def set_phase(project: Project, phase: str, done: int = 0, total: int = 0) -> None:
    ModelState.objects.filter(project=project).update(
        phase=phase, progress_done=done, progress_total=total, updated_at=timezone.now()
    )


def _refresh(project: Project) -> ModelVersion | None:
    snapshot_at = timezone.now()
    ids, vectors = ensure_embeddings(
        project, lambda done, total: set_phase(project, Phase.EMBEDDING, done, total)
    )
    labels = list(project.labels.all())
    training = training_set(project, labels)
    pool = pool_rows(project, ids)
    rng = np.random.default_rng(int(snapshot_at.timestamp()))
    if not training.can_train(project.multi_label):
        order = cold_start_order(project, labels, ids, vectors, pool, rng)
        write_head_version(project, ids, order, None, None, labels, snapshot_at)
        return None

    set_phase(project, Phase.TRAINING)
    started = time.perf_counter()
    X = vectors[rows_of(ids, np.array(training.item_ids, dtype=np.int64))]
    classifier = HeadClassifier(len(labels), multi_label=project.multi_label).fit(
        X, training.targets
    )
    train_seconds = time.perf_counter() - started
    metrics: VersionMetrics = {"head_C": classifier.fitted_C}
    held_out = None
    if not project.multi_label:
        held_out = version_metrics.held_out_probabilities(labels, training, X, classifier.fitted_C)
        metrics.update(version_metrics.cross_validation(labels, training, held_out))
    control = evaluation_set(project, labels)
    evaluation = version_metrics.evaluation(project, labels, classifier, control, ids, vectors)
    metrics["evaluation"] = evaluation
    metrics["labels_saved"] = version_metrics.labels_saved(
        project, labels, classifier, control, evaluation, len(training.item_ids), ids, vectors
    )
    metrics["stop_set"] = version_metrics.stop_set(project, classifier, ids, vectors)
    if not project.multi_label:
        metrics["suggestions"] = version_metrics.suggestion_thresholds(project, evaluation)

    set_phase(project, Phase.SCORING)
    started = time.perf_counter()
    # Every embedded item, once: the pool's rows rank the queue, all are kept as predictions.
    every_item = classifier.predict_proba(vectors)
    probabilities = every_item[pool]
    metrics["pool_uncertainty"] = mean_uncertainty(probabilities, multi_label=project.multi_label)
    ranked = rank_queue(project, labels, ids, vectors, pool, probabilities, training, rng)
    score_seconds = time.perf_counter() - started
    version = write_head_version(
        project,
        ids,
        ranked.order,
        ranked.probabilities,
        dict(
            kind="head",
            encoder=encoder_name(project),
            strategy=project.strategy,
            labels_used=len(training.item_ids),
            class_counts=training.class_counts,
            pool_size=len(pool),
            train_seconds=train_seconds,
            score_seconds=score_seconds,
            device="cpu",
            metrics=metrics,
        ),
        labels,
        snapshot_at,
    )
    if version is not None:
        store_predictions(version, labels, ids, every_item, training, held_out)
        FineTuneRun.objects.request_if_due(project, version.labels_used)
    return version
