"""Asking the workers for work, from the web app: returns at once, never waits on them.

Tasks are sent by name (config.celery.enqueue), so the web process never imports the workers'
code, nor torch.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import numpy.typing as npt
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from config.celery import enqueue
from labeling.models import Annotation, Project
from modeling.models import (
    FineTuneRun,
    ModelState,
    ModelVersion,
    cached_phrase_vector,
    phrase_vector_key,
)
from modeling.promotion import announce_promotion, mark_forced

RESCORE_POOL = "modeling.tasks.rescore_pool"
EMBED_PHRASE = "modeling.tasks.embed_phrase"
# A phrase is asked of the workers at most this often while its embedding is awaited.
PHRASE_ASKED_SECONDS = 30


def request_retrain(project: Project) -> bool:
    """Ask a worker to retrain; returns False when an earlier request will cover this one.

    Requests that arrive while a run is in progress merge into one follow-up run.
    """
    # Most answers find their request covered already; they return without locking the row,
    # so annotators answering together do not queue on it. A run that ends in between still
    # starts the follow-up, which reads every answer committed before it.
    if ModelState.objects.of(project).covers_new_request(timezone.now()):
        return False
    with transaction.atomic():
        state = ModelState.objects.locked(project)
        now = timezone.now()
        if state.covers_new_request(now):
            return False
        if state.is_running():
            state.follow_up = True
            state.save(update_fields=["follow_up", "updated_at"])
            return False
        state.queued_at = now
        state.save(update_fields=["queued_at", "updated_at"])
        transaction.on_commit(partial(ModelState.objects.send_retrain, project.pk))
    return True


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


# --- Fine-tuning (its own queue; see modeling/services/finetune.py) ------------------------


def active_finetune(project: Project) -> FineTuneRun | None:
    """The project's queued or running fine-tune, if any."""
    return FineTuneRun.objects.active(project)


def request_finetune(project: Project, user: User | None = None) -> FineTuneRun | None:
    """Queue a fine-tune of the project's transformer now; None when one is already under way.

    Projects also fine-tune by themselves as their labels grow (FineTuneRun.objects
    .request_if_due, called by the workers).
    """
    return FineTuneRun.objects.request(project, user)


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
        ModelState.objects.locked(version.project)
        if not mark_forced(version):
            return False
        announce_promotion(version)
        project_id, number = version.project_id, version.number
        transaction.on_commit(
            lambda: enqueue(RESCORE_POOL, project_id, number, on_broker_down=lambda exc: None)
        )
    return True


# --- Search by meaning ----------------------------------------------------------------------


def phrase_vector(project: Project, encoder: str, phrase: str) -> npt.NDArray[np.float32] | None:
    """The phrase's embedding in the space, or None while a worker makes it (asked here)."""
    vector = cached_phrase_vector(project.pk, encoder, phrase)
    if vector is None and cache.add(
        phrase_vector_key(project.pk, encoder, phrase) + ":asked", 1, PHRASE_ASKED_SECONDS
    ):
        enqueue(EMBED_PHRASE, project.pk, encoder, phrase, on_broker_down=lambda exc: None)
    return vector
