"""Celery tasks: ids in, re-read state, hand off to a service at once."""

from __future__ import annotations

from celery import Task, shared_task


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def refresh_model(self: Task, project_id: int) -> int | None:
    """Embed, retrain and re-rank one project's queue."""
    # Imported here so that the web process, which only enqueues, never loads torch.
    from modeling import services

    version = services.refresh_model(project_id, run_id=str(self.request.id))
    return version.number if version else None
