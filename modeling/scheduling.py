"""Asking the workers for a retrain, from the web app: returns at once, never waits on them."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from labeling.models import Annotation, Project
from modeling.models import ModelState

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
    with transaction.atomic():
        state = locked_state(project)
        now = timezone.now()
        if state.is_running():
            state.follow_up = True
            state.save(update_fields=["follow_up", "updated_at"])
            return False
        if state.queued_at is not None and now - state.queued_at < QUEUED_PATIENCE:
            return False
        state.queued_at = now
        state.save(update_fields=["queued_at", "updated_at"])
        project_id = project.pk
        transaction.on_commit(lambda: _enqueue(project_id))
    return True


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
