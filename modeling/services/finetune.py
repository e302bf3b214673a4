"""Fine-tuning a project's transformer in a worker: claim, train, version, promote, re-score.

Runs in the `gpu` queue's workers (modeling/tasks.py); the web app asks for it through
modeling/scheduling.py. The training itself is modeling/core/finetuning/; this module reads
and writes the database around it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from labeling.models import Item, Label, Project
from modeling.core.checkpoints import CHECKPOINT_NAME, load, save_atomic
from modeling.core.finetuning import (
    CancelCallback,
    FineTunedClassifier,
    MeanPooledClassifier,
    ProgressCallback,
    TrainingCancelled,
    TrainingResult,
)
from modeling.metrics import Evaluation
from modeling.models import (
    HEARTBEAT_SECONDS,
    HEARTBEAT_STALE,
    FineTuneRun,
    ModelState,
    ModelVersion,
)
from modeling.promotion import announce_promotion, promotion_decision
from modeling.services import version_metrics
from modeling.services.embeddings import (
    encoder_name,
)
from modeling.services.heartbeat import Heartbeat
from modeling.services.rescoring import rescore_pool
from modeling.services.training_data import evaluation_set, training_set
from modeling.services.transformer import KIND, encoder_path, finetune_config, token_caches

log = logging.getLogger(__name__)


def run_folder(run: FineTuneRun) -> Path:
    return Path(settings.SIFT_CHECKPOINT_DIR) / f"project-{run.project_id}" / f"run-{run.task_id}"


def finetune(project_id: int, task_id: str) -> ModelVersion | None:
    """Fine-tune one project's model; safe to run twice, and a redelivered task resumes.

    Returns the new version (promoted or not), or None when there was nothing to do: the run
    was already finished, another run is alive, or the run was cancelled.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    run = _claim(project, task_id)
    if run is None:
        return None
    beat = Heartbeat(
        lambda: FineTuneRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now()),
        name=f"finetune-heartbeat-{run.pk}",
    )
    with beat:
        try:
            version = run.version or _train_version(project, run)
            if version.promoted:
                rescore_pool(project.pk, version.number)
            _finish(run, FineTuneRun.Status.DONE)
            _follow_up(project)
            return version
        except TrainingCancelled:
            _finish(run, FineTuneRun.Status.CANCELLED)
            return None
        except Exception as exc:
            _finish(run, FineTuneRun.Status.FAILED, f"{type(exc).__name__}: {exc}")
            raise


def _claim(project: Project, task_id: str) -> FineTuneRun | None:
    """Take the run for this task; wait while a lost delivery of it may still be running."""
    while True:
        with transaction.atomic():
            ModelState.objects.locked(project)  # one claim at a time per project
            run, _ = FineTuneRun.objects.get_or_create(
                task_id=task_id, defaults={"project": project}
            )
            if not run.is_active():
                return None  # redelivered after it finished: nothing left to do
            if run.cancel_requested:
                _finish(run, FineTuneRun.Status.CANCELLED)
                return None
            if _alive(run) and run.status == FineTuneRun.Status.RUNNING:
                pass  # the first delivery may still be training: wait below
            else:
                others = FineTuneRun.objects.filter(
                    project=project, status=FineTuneRun.Status.RUNNING
                ).exclude(pk=run.pk)
                for other in others:
                    if _alive(other):
                        run.status = FineTuneRun.Status.CANCELLED
                        run.last_error = "another fine-tune of this project was running"
                        run.finished_at = timezone.now()
                        run.save()
                        return None
                    other.status = FineTuneRun.Status.FAILED
                    other.last_error = "its worker stopped answering"
                    other.finished_at = timezone.now()
                    other.save()
                now = timezone.now()
                run.status = FineTuneRun.Status.RUNNING
                run.started_at = run.started_at or now
                run.heartbeat_at = now
                run.attempts += 1
                run.last_error = ""
                run.save()
                return run
        time.sleep(HEARTBEAT_SECONDS)


def _follow_up(project: Project) -> None:
    """Labels that came in during the run, if enough, make the next fine-tune (merged: one
    run for however many retrains asked while this one trained)."""
    head = project.model_versions.filter(kind="head").first()
    if head is not None:
        FineTuneRun.objects.request_if_due(project, head.labels_used)


def _alive(run: FineTuneRun) -> bool:
    return run.heartbeat_at is not None and timezone.now() - run.heartbeat_at < HEARTBEAT_STALE


def _finish(run: FineTuneRun, status: str, error: str = "") -> None:
    FineTuneRun.objects.filter(pk=run.pk).update(
        status=status, last_error=error, finished_at=timezone.now()
    )
    if status == FineTuneRun.Status.DONE:
        for name in (CHECKPOINT_NAME, *(p.name for p in run_folder(run).glob("best-*.pt"))):
            (run_folder(run) / name).unlink(missing_ok=True)


def _train_version(project: Project, run: FineTuneRun) -> ModelVersion:
    labels = list(project.labels.all())
    _fix_training_set(project, run, labels)
    texts = dict(Item.objects.filter(pk__in=run.item_ids).values_list("id", "text"))
    rows = [i for i, item_id in enumerate(run.item_ids) if item_id in texts]
    if not rows:
        raise ValueError("the project has no labeled items to fine-tune on")
    inputs = np.array([texts[run.item_ids[i]] for i in rows], dtype=object)
    targets = np.asarray(run.targets, dtype=np.int64)[rows]
    config = finetune_config()
    warm = _weights_of(project, run.warm_start_version)
    folder = run_folder(run)
    checkpoint = load(folder / CHECKPOINT_NAME)
    if checkpoint is not None:
        FineTuneRun.objects.filter(pk=run.pk).update(
            resumed_from_step=int(checkpoint["state"]["step"])
        )
        del checkpoint
    classifier = FineTunedClassifier(
        len(labels),
        multi_label=project.multi_label,
        model_path=encoder_path(project),
        config=config,
        init_state=warm,
        callbacks=[
            ProgressCallback(lambda done, total: _progress(run, done, total)),
            CancelCallback(
                lambda: FineTuneRun.objects.filter(pk=run.pk, cancel_requested=True).exists()
            ),
        ],
        checkpoint_dir=folder,
        token_cache=token_caches.get((str(encoder_path(project)), config.max_length)),
        stated_watts=settings.SIFT_DEVICE_WATTS or None,
    )
    started = time.perf_counter()
    classifier.fit(inputs, targets)
    train_seconds = time.perf_counter() - started
    result = classifier.result
    assert result is not None
    assert classifier.token_cache is not None
    token_caches[(str(encoder_path(project)), config.max_length)] = classifier.token_cache

    control = evaluation_set(project, labels)
    control_texts = dict(Item.objects.filter(pk__in=control.item_ids).values_list("id", "text"))
    control_ids = np.array(sorted(control_texts), dtype=np.int64)
    evaluation = version_metrics.evaluation(
        project,
        labels,
        classifier,
        control,
        control_ids,
        np.array([control_texts[i] for i in control_ids.tolist()], dtype=object),
    )
    weights = folder / "weights.pt"
    save_atomic(classifier.state_dict(), weights)
    pooling = "mean" if isinstance(classifier.model, MeanPooledClassifier) else "cls"
    return _record_version(
        project, run, labels, result, evaluation, train_seconds, weights, pooling
    )


def _fix_training_set(project: Project, run: FineTuneRun, labels: list[Label]) -> None:
    """The first attempt fixes the labels and the warm start; later attempts reuse them."""
    if run.snapshot_at is not None:
        return
    run.snapshot_at = timezone.now()
    training = training_set(project, labels)
    run.item_ids = list(training.item_ids)
    run.targets = training.targets.tolist()
    serving = _last_promoted_finetune(project)
    run.warm_start_version = serving.number if serving else None
    run.save(update_fields=["snapshot_at", "item_ids", "targets", "warm_start_version"])


def _last_promoted_finetune(project: Project) -> ModelVersion | None:
    return project.model_versions.filter(kind=KIND, promoted=True).exclude(weights_path="").first()


def _weights_of(project: Project, number: int | None) -> dict[str, Any] | None:
    if number is None:
        return None
    version = project.model_versions.filter(number=number).first()
    if version is None or not version.weights_path:
        return None
    return load(Path(version.weights_path))


def _progress(run: FineTuneRun, done: int, total: int) -> None:
    FineTuneRun.objects.filter(pk=run.pk).update(step=done, total_steps=total)


def _record_version(
    project: Project,
    run: FineTuneRun,
    labels: list[Label],
    result: TrainingResult,
    evaluation: Evaluation,
    train_seconds: float,
    weights: Path,
    pooling: str,
) -> ModelVersion:
    """Store the version and decide on promotion, in one transaction with the run."""
    price = float(settings.SIFT_PRICE_PER_DEVICE_HOUR)
    counts = {label.name: 0 for label in labels}
    targets = np.asarray(run.targets)
    for i, label in enumerate(labels):
        counts[label.name] = int((targets == i).sum() if targets.ndim == 1 else targets[:, i].sum())
    with transaction.atomic():
        ModelState.objects.locked(project)
        latest = project.model_versions.first()
        serving = project.model_versions.filter(promoted=True).first()
        promotion = promotion_decision(evaluation, serving)
        version = ModelVersion.objects.create(
            project=project,
            number=(latest.number + 1) if latest else 1,
            kind=KIND,
            encoder=encoder_name(project),
            strategy=project.strategy,
            labels_used=len(run.item_ids),
            class_counts=counts,
            snapshot_at=run.snapshot_at or timezone.now(),
            train_seconds=train_seconds,
            device=result.device,
            promoted=bool(promotion["promoted"]),
            samples_per_second=result.samples_per_second,
            peak_memory_bytes=result.peak_memory_bytes,
            energy_wh=result.energy_wh,
            energy_source=result.energy_source,
            cost=price * train_seconds / 3600,
            weights_path=str(weights),
            metrics={
                "evaluation": evaluation,
                "promotion": promotion,
                "training": {
                    "precision": result.precision,
                    "steps": result.steps,
                    "epochs_run": result.epochs_run,
                    "samples_seen": result.samples_seen,
                    "effective_batch_size": result.effective_batch_size,
                    "best_validation_loss": result.best_validation_loss,
                    "stopped_early": result.stopped_early,
                    "resumed_from_step": result.resumed_from_step,
                    "warm_start_version": run.warm_start_version,
                    "padding_fraction": result.padding_fraction,
                    "pooling": pooling,
                },
            },
        )
        FineTuneRun.objects.filter(pk=run.pk).update(
            version=version, resumed_from_step=result.resumed_from_step
        )
        if version.promoted:
            announce_promotion(version)
    return version
