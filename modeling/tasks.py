"""Celery tasks: ids in, re-read state, hand off to a service at once.

The web side sends these by name (modeling/scheduling.py), so it never imports this module or
the services under it, and never loads torch; the workers never call back into the web side.
"""

from __future__ import annotations

from datetime import datetime

from celery import Task, shared_task
from django.utils import timezone

from modeling.models import QUEUED_PATIENCE, ModelState
from modeling.services import finetune, phrases, refresh, rescoring


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def refresh_model(self: Task, project_id: int) -> int | None:
    """Embed, retrain and re-rank one project's queue; a redelivered task takes over its run."""
    version = refresh.refresh_model(project_id, run_id=str(self.request.id))
    return version.number if version else None


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def finetune_model(self: Task, project_id: int) -> int | None:
    """Fine-tune the transformer on the project's labels; a redelivered task resumes."""
    version = finetune.finetune(project_id, task_id=str(self.request.id))
    return version.number if version else None


@shared_task(acks_late=True, reject_on_worker_lost=True)
def rescore_pool(project_id: int, version_number: int) -> None:
    """Rank the queue with a fine-tuned version a lead promoted."""
    rescoring.rescore_pool(project_id, version_number)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def score_shard(project_id: int, version_number: int, index: int) -> None:
    """Embed and score one shard of a promoted fine-tune's pool; the last one writes the queue."""
    rescoring.score_shard(project_id, version_number, index)


@shared_task(acks_late=True)
def embed_phrase(project_id: int, encoder: str, phrase: str) -> None:
    """Embed a phrase a lead searches by meaning, in the space the items page searches."""
    phrases.embed_phrase(project_id, encoder, phrase)


@shared_task(acks_late=True)
def resume_retrains(requested_before: str | None = None) -> list[int]:
    """Send again the retrains a broker outage or a dead worker lost (requests from before
    `requested_before`, by default those waiting longer than patience), and the scoring shards
    a dead worker or the broker lost; see config/celery.py."""
    before = (
        datetime.fromisoformat(requested_before)
        if requested_before
        else timezone.now() - QUEUED_PATIENCE
    )
    lost = ModelState.objects.take_lost_work(before)
    for project_id, task_id in lost:
        ModelState.objects.send_retrain(project_id, task_id)
    rescoring.resend_lost_shards()
    return [project_id for project_id, _ in lost]
