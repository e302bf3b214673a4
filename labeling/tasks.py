"""Celery tasks for labeling: ids in, re-read state, hand off to a service at once."""

from __future__ import annotations

from celery import shared_task

from labeling.exporting import run_export_job


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_export(job_id: int) -> None:
    """Write an export job's file; a finished job is left alone, any other starts afresh."""
    run_export_job(job_id)
