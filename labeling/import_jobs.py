"""Imports recorded as batches: small files are read in the request, big ones by a worker.

Every import is an `ImportJob`: the file's name and format, the options it was read with, the
counts and report, and the items it created (`Item.import_job`). A file over
SIFT_IMPORT_INLINE_BYTES is kept under SIFT_MEDIA_ROOT/imports and read by
`labeling.tasks.run_import`, sent by name (config.celery.enqueue), so nothing that starts a
job imports labeling.tasks.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from config.celery import enqueue
from labeling.importing import ImportFailed, ImportOptions, ImportReport, import_items
from labeling.models import ImportJob, Project
from labeling.parsers import ParseError
from modeling.scheduling import request_retrain

if TYPE_CHECKING:
    from django.contrib.auth.models import User

log = logging.getLogger(__name__)

RUN_IMPORT = "labeling.tasks.run_import"
ACTIVE = (ImportJob.Status.PENDING, ImportJob.Status.RUNNING)
FINISHED = (ImportJob.Status.DONE, ImportJob.Status.FAILED)
KEPT_FOLDER = "imports"
# The batches the items page's filter offers, newest first.
LISTED_BATCHES = 100
_CACHE_DOWN = (RedisError, OSError)
_PROGRESS_SECONDS = 24 * 3600

# Hears the bytes of the file read so far.
Progress = Callable[[int], None]


def runs_in_background(size: int) -> bool:
    """Whether a file of this many bytes is too big to import within the request."""
    return size > settings.SIFT_IMPORT_INLINE_BYTES


def import_now(
    project: Project,
    user: User | None,
    stream: Iterable[bytes],
    file_name: str,
    fmt: str,
    options: ImportOptions,
) -> tuple[ImportJob, ImportReport]:
    """Import the file in this process as one recorded batch, then ask for a retrain.

    ImportFailed (after the failure is recorded) leaves the project as it was.
    """
    record = {
        "project": project,
        "requested_by": user,
        "file_name": file_name[:255],
        "format": fmt,
        "options": options.to_json(),
    }
    read = _BytesRead()
    try:
        # The record of the batch commits with its items, or not at all: a process that dies
        # mid-import leaves no job "running" for ever.
        with transaction.atomic():
            job = ImportJob.objects.create(**record, status=ImportJob.Status.RUNNING)
            report = _import(job, stream, options, read)
            _finish(job, report, read.count)
    except (ImportFailed, ParseError) as exc:
        ImportJob.objects.create(
            **record, status=ImportJob.Status.FAILED, error=str(exc), finished_at=timezone.now()
        )
        raise
    if report.imported:
        request_retrain(project)
    return job, report


def start_import_job(
    project: Project,
    user: User,
    chunks: Iterable[bytes],
    file_name: str,
    fmt: str,
    options: ImportOptions,
) -> ImportJob:
    """Keep the file and hand it to a worker once the transaction commits; the job, refreshed
    (without a broker it has failed already).

    A problem while the file arrives (ImportFailed: an upload cut short) keeps nothing.
    """
    folder = Path(settings.MEDIA_ROOT) / KEPT_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{project.pk}-{secrets.token_hex(16)}{PurePath(file_name).suffix[:10]}"
    size = 0
    try:
        with (folder / name).open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
    except BaseException:
        (folder / name).unlink(missing_ok=True)
        raise
    job = ImportJob.objects.create(
        project=project,
        requested_by=user,
        file_name=file_name[:255],
        format=fmt,
        options=options.to_json(),
        source=f"{KEPT_FOLDER}/{name}",
        bytes_total=size,
    )
    job_pk = job.pk
    transaction.on_commit(lambda: _enqueue(job_pk))
    job.refresh_from_db()
    return job


def _enqueue(job_pk: int) -> None:
    enqueue(
        RUN_IMPORT,
        job_pk,
        on_broker_down=lambda exc: _fail(
            job_pk,
            "The task broker could not be reached, so no worker will import this file; "
            f"try again later. ({exc})",
        ),
    )


def run_import_job(job_pk: int) -> None:
    """Import a kept file; a done or failed job is left alone.

    The import, its items and the job's "done" commit together in one transaction that holds
    the job's row: a second delivery waits for it and then finds the job done. A job found
    "running" whose row is free was left by a worker that died mid-run, which committed
    nothing: it is imported afresh, never twice.
    """
    ImportJob.objects.filter(pk=job_pk, status=ImportJob.Status.PENDING).update(
        status=ImportJob.Status.RUNNING
    )
    try:
        with transaction.atomic():
            job = ImportJob.objects.select_for_update().filter(pk=job_pk).first()
            if job is None or job.status in FINISHED:
                return
            _publish(job_pk, 0)
            path = Path(settings.MEDIA_ROOT) / job.source
            if not job.source or not path.is_file():
                raise ImportFailed("The uploaded file is no longer kept. Nothing was imported.")
            with path.open("rb") as stream:
                options = ImportOptions.from_json(job.options)
                report = _import(job, stream, options, partial(_publish, job_pk))
            _finish(job, report, job.bytes_total)
    except (ImportFailed, ParseError) as exc:
        _fail(job_pk, str(exc))
        return
    except Exception as exc:
        log.exception("Import job %s failed", job_pk)
        _fail(job_pk, f"The import stopped on an unexpected error; nothing was imported. ({exc})")
        raise
    finally:
        _publish_done(job_pk)
    _discard_source(job)
    if report.imported:
        request_retrain(job.project)


def _import(
    job: ImportJob, stream: Iterable[bytes], options: ImportOptions, progress: Progress
) -> ImportReport:
    return import_items(
        job.project,
        stream,
        job.format,
        options.columns,
        options.rules,
        job=job,
        progress=progress,
    )


def _finish(job: ImportJob, report: ImportReport, size: int) -> None:
    job.status = ImportJob.Status.DONE
    job.imported, job.labeled = report.imported, report.labeled
    job.duplicates, job.rejected = report.duplicates, report.rejected
    job.report = report.details_json()
    job.bytes_total = job.bytes_done = max(size, job.bytes_total)
    job.finished_at = timezone.now()
    job.save()


def _fail(job_pk: int, error: str) -> None:
    job = ImportJob.objects.filter(pk=job_pk).exclude(status=ImportJob.Status.DONE).first()
    if job is None:
        return
    ImportJob.objects.filter(pk=job_pk).update(
        status=ImportJob.Status.FAILED, error=error, finished_at=timezone.now()
    )
    _discard_source(job)


def _discard_source(job: ImportJob) -> None:
    if job.source:
        (Path(settings.MEDIA_ROOT) / job.source).unlink(missing_ok=True)
        ImportJob.objects.filter(pk=job.pk).update(source="")


# Progress. The import runs in one transaction, so a write to the job's row would stay unseen
# until the end (and on SQLite, whose writer holds the whole database, a second connection
# could not write at all). The worker publishes the bytes read to the cache instead (Redis,
# or files under SIFT_VAR_DIR without it), which every web process reads and no transaction
# hides; the row gets the final count when the import commits.


class _BytesRead:
    """Progress for an import in the request: the count, kept for the record."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, bytes_read: int) -> None:
        self.count = bytes_read


def _progress_key(job_pk: int) -> str:
    return f"import-progress:{job_pk}"


def _publish(job_pk: int, bytes_read: int) -> None:
    try:
        cache.set(_progress_key(job_pk), bytes_read, _PROGRESS_SECONDS)
    except _CACHE_DOWN as exc:  # the progress bar stands still; the import goes on
        log.warning(
            "Import job %s: progress not published, the cache is unreachable: %s", job_pk, exc
        )


def _publish_done(job_pk: int) -> None:
    with contextlib.suppress(*_CACHE_DOWN):
        cache.delete(_progress_key(job_pk))


def with_progress(jobs: list[ImportJob]) -> list[ImportJob]:
    """The jobs, a running one's `bytes_done` as its worker last published it."""
    running = {_progress_key(job.pk): job for job in jobs if job.status == ImportJob.Status.RUNNING}
    if running:
        try:
            published = cache.get_many(list(running))
        except _CACHE_DOWN:
            published = {}
        for key, job in running.items():
            job.bytes_done = max(job.bytes_done, int(published.get(key) or 0))
    return jobs


def import_batches(project: Project, chosen: int | None = None) -> list[ImportJob]:
    """The project's finished imports the items page's batch filter offers, newest first (the
    chosen one always among them)."""
    done = project.import_jobs.filter(status=ImportJob.Status.DONE)
    batches = list(done.only("pk", "file_name", "created_at", "imported")[:LISTED_BATCHES])
    if chosen is not None and all(job.pk != chosen for job in batches):
        batches += list(project.import_jobs.filter(pk=chosen))
    return batches
