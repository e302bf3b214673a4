"""Background exports: an `ExportJob` is recorded here and its file written by a worker.

The job is sent to the worker by task name (config.celery.enqueue), so nothing that starts a
job imports labeling.tasks.
"""

from __future__ import annotations

import logging
import tempfile
from typing import TYPE_CHECKING

from django.core.files import File
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from config.celery import enqueue
from labeling.exports.request import ExportOptions, candidate_items
from labeling.exports.rows import export_rows
from labeling.exports.writers import export_filename, write_export
from labeling.models import ExportJob, Project, Webhook
from labeling.webhooks import fire

if TYPE_CHECKING:
    from django.contrib.auth.models import User

log = logging.getLogger(__name__)

RUN_EXPORT = "labeling.tasks.run_export"


def start_export_job(
    project: Project, user: User, fmt: str, options: ExportOptions, rows_total: int
) -> ExportJob:
    """Record an export job and hand it to a worker once the transaction commits."""
    job = ExportJob.objects.create(
        project=project,
        requested_by=user,
        format=fmt,
        filters=options.to_json(),
        rows_total=rows_total,
    )
    job_pk = job.pk
    transaction.on_commit(lambda: _enqueue(job_pk))
    return job


def _enqueue(job_pk: int) -> None:
    enqueue(
        RUN_EXPORT,
        job_pk,
        on_broker_down=lambda exc: ExportJob.objects.filter(
            pk=job_pk, status=ExportJob.Status.PENDING
        ).update(
            status=ExportJob.Status.FAILED,
            error=f"The task broker could not be reached, so no worker will write this "
            f"export; try again later. ({exc})",
            finished_at=timezone.now(),
        ),
    )


def run_export_job(job_pk: int) -> None:
    """Write the job's export file; a finished job is left alone, any other starts afresh."""
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().filter(pk=job_pk).first()
        if job is None or job.status == ExportJob.Status.DONE:
            return
        stale = job.file.name
        job.status = ExportJob.Status.RUNNING
        job.rows_done, job.error, job.file, job.finished_at = 0, "", None, None
        job.save(update_fields=["status", "rows_done", "error", "file", "finished_at"])
    if stale:
        job.file.storage.delete(stale)

    def progress(read: int) -> None:
        ExportJob.objects.filter(pk=job_pk).update(rows_done=read)

    try:
        project = job.project
        options = ExportOptions.from_json(job.filters)
        total = candidate_items(project, options).count()
        ExportJob.objects.filter(pk=job_pk).update(rows_total=total)
        with tempfile.TemporaryFile() as target:
            written = write_export(
                export_rows(project, options, progress=progress),
                job.format,
                target,
                options.with_answers,
                project,
            )
            target.seek(0)
            job.file.save(export_filename(project, job.format), File(target), save=False)
    except Exception as exc:
        log.exception("Export job %s failed", job_pk)
        ExportJob.objects.filter(pk=job_pk).update(
            status=ExportJob.Status.FAILED, error=str(exc), finished_at=timezone.now()
        )
        raise
    # At the end both counts are the rows in the file; while running they count items read.
    job.status = ExportJob.Status.DONE
    job.rows_done = job.rows_total = written
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "rows_done", "rows_total", "file", "finished_at"])
    fire(
        project,
        Webhook.Event.EXPORT_READY,
        {
            "project": project.pk,
            "export": job.pk,
            "format": job.format,
            "rows": written,
            "download_url": reverse("export-job-download", args=[job.pk]),
        },
    )
