"""Celery tasks for labeling: ids in, re-read state, hand off to a service at once.

The web side sends them by name (config.celery.enqueue), so nothing here is imported by the
modules that enqueue them.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from labeling.exports.jobs import run_export_job
from labeling.import_jobs import run_import_job
from labeling.webhook_delivery import DeliveryFailed, deliver


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_export(job_id: int) -> None:
    """Write an export job's file; a finished job is left alone, any other starts afresh."""
    run_export_job(job_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_import(job_id: int) -> None:
    """Import a big upload's kept file; a done or failed job is left alone."""
    run_import_job(job_id)


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
