"""Asking the workers for a retrain, from the web app: returns at once, never waits on them."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from labeling.models import Annotation, Project, Webhook
from labeling.webhooks import fire
from modeling.models import FineTuneRun, ModelState, ModelVersion

log = logging.getLogger(__name__)

# A retrain request younger than this is taken to be still waiting for a worker.
QUEUED_PATIENCE = timedelta(minutes=5)
BROKER_RETRY_AFTER = timedelta(seconds=30)


def state_of(project: Project) -> ModelState:
    """The project's model state, created on first use."""
    state, _ = ModelState.objects.get_or_create(project=project)
    return state


def locked_state(project: Project) -> ModelState:
    """The model state row, locked until the surrounding transaction ends."""
    state_of(project)
    return ModelState.objects.select_for_update().get(project=project)


def request_retrain(project: Project) -> bool:
    """Ask a worker to retrain; returns False when an earlier request will cover this one.

    Requests that arrive while a run is in progress merge into one follow-up run.
    """
    # Most answers find their request covered already; they return without locking the row,
    # so annotators answering together do not queue on it. A run that ends in between still
    # starts the follow-up, which reads every answer committed before it.
    if _covered(state_of(project), timezone.now()):
        return False
    with transaction.atomic():
        state = locked_state(project)
        now = timezone.now()
        if _covered(state, now):
            return False
        if state.is_running():
            state.follow_up = True
            state.save(update_fields=["follow_up", "updated_at"])
            return False
        state.queued_at = now
        state.save(update_fields=["queued_at", "updated_at"])
        project_id = project.pk
        transaction.on_commit(lambda: _enqueue(project_id))
    return True


def _covered(state: ModelState, now: datetime) -> bool:
    """A follow-up of the running run, or a request sent recently, will cover a new one."""
    if state.is_running():
        return state.follow_up
    return state.queued_at is not None and now - state.queued_at < QUEUED_PATIENCE


def _enqueue(project_id: int) -> None:
    from modeling.tasks import refresh_model

    try:
        refresh_model.delay(project_id)
    except (BrokerError, OSError) as exc:
        # Labeling goes on from the current queue. Answers arriving in the next half minute
        # do not try again, so a dead broker costs one slow request, not every request.
        log.warning("Could not reach the task broker for project %s: %s", project_id, exc)
        ModelState.objects.filter(project_id=project_id).update(
            queued_at=timezone.now() - QUEUED_PATIENCE + BROKER_RETRY_AFTER,
            last_error=f"The task broker could not be reached: {exc}",
        )


def resume_retrain_requests(requested_before: datetime) -> list[int]:
    """Send again every retrain request made before `requested_before` that no run took up.

    A broker that was down refused them, or one restarted without its data dropped them; each
    worker calls this when it (re)connects. A request sent again is stamped anew, so workers
    reconnecting together send it once. Returns the projects asked for.
    """
    resent = []
    with transaction.atomic():
        waiting = ModelState.objects.select_for_update(skip_locked=True).filter(
            queued_at__lt=requested_before
        )
        for state in waiting:
            if state.is_running():
                continue  # the run ends by taking up its follow-up requests
            state.queued_at = timezone.now()
            state.save(update_fields=["queued_at", "updated_at"])
            resent.append(state.project_id)
    for project_id in resent:
        _enqueue(project_id)
    return resent


def retrain_if_due(project: Project) -> bool:
    """Request a retrain once `retrain_every` answers arrived since the last model's labels."""
    latest = project.model_versions.first()
    answers = Annotation.objects.filter(item__project=project, skipped=False)
    if latest is not None:
        # created_at is indexed, so this stays cheap on projects with many answers.
        answers = answers.filter(created_at__gt=latest.snapshot_at)
    if answers.count() < project.retrain_every:
        return False
    return request_retrain(project)


# --- Fine-tuning (its own queue; see modeling/finetune_service.py) ------------------------


def active_finetune(project: Project) -> FineTuneRun | None:
    """The project's queued or running fine-tune, if any."""
    return project.finetune_runs.filter(status__in=FineTuneRun.ACTIVE).first()


def request_finetune(project: Project, user: User | None = None) -> FineTuneRun | None:
    """Queue a fine-tune of the project's transformer; None when one is already under way."""
    with transaction.atomic():
        locked_state(project)
        if active_finetune(project) is not None:
            return None
        run = FineTuneRun.objects.create(
            project=project, task_id=str(uuid.uuid4()), requested_by=user
        )
        transaction.on_commit(lambda: _send_finetune(run))
    return run


def _send_finetune(run: FineTuneRun) -> None:
    from modeling.tasks import finetune_model

    try:
        finetune_model.apply_async((run.project_id,), task_id=run.task_id)
    except (BrokerError, OSError) as exc:
        log.warning("Could not reach the task broker for fine-tune %s: %s", run.task_id, exc)
        FineTuneRun.objects.filter(pk=run.pk).update(
            status=FineTuneRun.Status.FAILED,
            last_error=f"The task broker could not be reached: {exc}",
            finished_at=timezone.now(),
        )


def cancel_finetune(project: Project) -> bool:
    """Ask the project's fine-tune to stop at its next step; False when none is under way."""
    run = active_finetune(project)
    if run is None:
        return False
    FineTuneRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    return True


def promote_version(version: ModelVersion) -> bool:
    """A lead promotes a fine-tuned version its evaluation held back; a worker re-ranks the
    queue with it. False when it was already promoted."""
    with transaction.atomic():
        locked_state(version.project)
        updated = ModelVersion.objects.filter(pk=version.pk, promoted=False).update(promoted=True)
        if not updated:
            return False
        version.refresh_from_db()
        metrics = dict(version.metrics)
        metrics["promotion"] = {**metrics.get("promotion", {}), "forced": True, "promoted": True}
        ModelVersion.objects.filter(pk=version.pk).update(metrics=metrics)
        version.metrics = metrics
        announce_promotion(version)
        project_id, number = version.project_id, version.number
        transaction.on_commit(lambda: _send_rescore(project_id, number))
    return True


def announce_promotion(version: ModelVersion) -> None:
    """Tell the project's webhooks that a version now ranks the queue."""
    fire(
        version.project,
        Webhook.Event.MODEL_PROMOTED,
        {
            "project": version.project_id,
            "version": version.number,
            "labels_used": version.labels_used,
            # The stop set's predictions are bookkeeping, not news for a receiver.
            "metrics": {k: v for k, v in version.metrics.items() if k != "stop_set"},
        },
    )


def _send_rescore(project_id: int, number: int) -> None:
    from modeling.tasks import rescore_pool

    try:
        rescore_pool.delay(project_id, number)
    except (BrokerError, OSError) as exc:
        log.warning("Could not reach the task broker to re-rank project %s: %s", project_id, exc)
