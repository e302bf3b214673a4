"""The import page: a lead uploads a file of items, optionally labeled, and watches a big
one's import in the background."""

from __future__ import annotations

import os
from http import HTTPStatus
from typing import IO

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files import File
from django.http import HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django_htmx.http import HttpResponseStopPolling

from labeling.access import LEADS, AuthedRequest, project_for
from labeling.forms import ImportForm
from labeling.import_jobs import (
    FINISHED,
    import_now,
    runs_in_background,
    start_import_job,
    with_progress,
)
from labeling.import_preview import HEAD_BYTES, Preview, preview_of
from labeling.importing import ImportFailed, ImportOptions, ImportReport
from labeling.models import ImportJob, Project
from labeling.parsers import ParseError, guess_format
from labeling.staging import discard, open_staged, stage
from labeling.uploads import ImportUploadGuard

# Past imports listed under the form.
LISTED_IMPORTS = 20


# The CSRF check reads the form, and with it the upload: it runs in _import, once the guard is
# first among the upload handlers (Django's pattern for custom upload handlers).
@csrf_exempt
@login_required
def project_import(request: AuthedRequest, project_id: int) -> HttpResponseBase:
    project = project_for(request.user, project_id, LEADS)
    if request.method != "POST":
        return _page(request, project, ImportForm(project=project))
    guard = ImportUploadGuard(request)
    request.upload_handlers.insert(0, guard)
    data, files = request.POST, request.FILES
    if guard.problem is not None:
        # Nothing is imported, so this answer needs no CSRF check (the token may not have come).
        problem = str(guard.problem)
        return _page(
            request, project, ImportForm(data, files, project=project, upload_problem=problem)
        )
    return _import(request, project, ImportForm(data, files, project=project))


@csrf_protect
def _import(request: AuthedRequest, project: Project, form: ImportForm) -> HttpResponseBase:
    """Import the upload, or (Preview) keep it and show what an import would read; a big one
    is handed to a worker, and the page shows that job."""
    if not form.is_valid():
        return _page(request, project, form)
    upload, token = form.cleaned_data["file"], form.cleaned_data["staged"]
    if upload is not None:
        discard(project, request.user, token)
        token = stage(project, request.user, upload.chunks()) if "preview" in request.POST else ""
    source = upload if not token else open_staged(project, request.user, token)
    if source is None:
        form.add_error("file", "The previewed file is no longer kept: choose it again.")
        return _page(request, project, form)
    report = preview = job = None
    try:
        fmt = form.cleaned_data["format"] or guess_format(form.file_name())
        options = ImportOptions(form.columns(), form.label_rules())
        if "preview" in request.POST:
            head = source.read(HEAD_BYTES)
            source.seek(0)
            preview = preview_of(project, head, source, fmt, options.columns, options.rules)
        elif runs_in_background(_size_of(source)):
            chunks = File(source).chunks()
            job = start_import_job(project, request.user, chunks, form.file_name(), fmt, options)
            discard(project, request.user, token)
            return redirect("import_job", project_id=project.pk, job_id=job.pk)
        else:
            job, report = import_now(project, request.user, source, form.file_name(), fmt, options)
            discard(project, request.user, token)
            token = ""
    except (ParseError, ImportFailed) as exc:
        form.add_error(None, str(exc))
    finally:
        source.close()
    return _page(request, project, form.keeping(token), report, preview, job)


@login_required
def import_job(request: AuthedRequest, project_id: int, job_id: int) -> HttpResponse:
    """One import: its progress while a worker reads the file, then its report. The page's
    progress polls this (htmx) and stops once the job is done or failed."""
    project = project_for(request.user, project_id, LEADS)
    job = get_object_or_404(ImportJob, pk=job_id, project=project)
    with_progress([job])
    if not request.htmx:
        return _page(request, project, ImportForm(project=project), job=job)
    finished = job.status in FINISHED
    status = HttpResponseStopPolling.status_code if finished else HTTPStatus.OK
    context = {"project": project, "job": job, "report": _report_of(job)}
    return render(request, "labeling/project_import.html#job", context, status=status)


def _size_of(source: IO[bytes]) -> int:
    source.seek(0, os.SEEK_END)
    size = source.tell()
    source.seek(0)
    return size


def _report_of(job: ImportJob | None) -> ImportReport | None:
    if job is None or job.status != ImportJob.Status.DONE:
        return None
    return ImportReport.of_job(job)


def _page(
    request: AuthedRequest,
    project: Project,
    form: ImportForm,
    report: ImportReport | None = None,
    preview: Preview | None = None,
    job: ImportJob | None = None,
) -> HttpResponse:
    past = with_progress(list(project.import_jobs.select_related("requested_by")[:LISTED_IMPORTS]))
    context = {
        "project": project,
        "form": form,
        "report": report or _report_of(job),
        "preview": preview,
        "job": job,
        "past_imports": past,
        "inline_limit": settings.SIFT_IMPORT_INLINE_BYTES,
    }
    return render(
        request, "labeling/project_import.html", context, status=422 if form.errors else 200
    )
