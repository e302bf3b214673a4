"""Celery tasks: ids in, re-read state, hand off to a service at once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import Task, shared_task

from labeling.webhooks import DeliveryFailed, deliver
from modeling import scheduling


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def refresh_model(self: Task, project_id: int) -> int | None:
    """Embed, retrain and re-rank one project's queue."""
    # Imported here so that the web process, which only enqueues, never loads torch.
    from modeling import services

    version = services.refresh_model(project_id, run_id=str(self.request.id))
    return version.number if version else None


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def finetune_model(self: Task, project_id: int) -> int | None:
    """Fine-tune the transformer on the project's labels; a redelivered task resumes."""
    from modeling import finetune_service

    version = finetune_service.finetune(project_id, task_id=str(self.request.id))
    return version.number if version else None


@shared_task(acks_late=True, reject_on_worker_lost=True)
def rescore_pool(project_id: int, version_number: int) -> None:
    """Rank the queue with a fine-tuned version a lead promoted."""
    from modeling import finetune_service

    finetune_service.rescore_pool(project_id, version_number)


@shared_task(acks_late=True)
def resume_retrains(requested_before: str) -> list[int]:
    """Send again the retrain requests a broker outage may have lost; see config/celery.py."""
    return scheduling.resume_retrain_requests(datetime.fromisoformat(requested_before))


@shared_task(
    acks_late=True,
    autoretry_for=(DeliveryFailed,),
    max_retries=5,
    retry_backoff=True,
    retry_backoff_max=600,
)
def deliver_webhook(webhook_id: int, event: str, payload: dict[str, Any], delivery_id: str) -> None:
    """POST one signed event to one webhook; network errors and 5xx answers are retried."""
    deliver(webhook_id, event, payload, delivery_id)
