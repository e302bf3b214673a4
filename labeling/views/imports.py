"""The import page: a lead uploads a file of items, optionally labeled."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from labeling.access import LEADS, AuthedRequest, project_for
from labeling.forms import ImportForm
from labeling.importing import ImportFailed, ImportReport, import_items
from labeling.models import Project
from labeling.parsers import ParseError, guess_format
from labeling.uploads import ImportUploadGuard
from modeling.scheduling import request_retrain


# The CSRF check reads the form, and with it the upload: it runs in _import, once the guard is
# first among the upload handlers (Django's pattern for custom upload handlers).
@csrf_exempt
@login_required
def project_import(request: AuthedRequest, project_id: int) -> HttpResponse:
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
def _import(request: AuthedRequest, project: Project, form: ImportForm) -> HttpResponse:
    report = None
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            fmt = form.cleaned_data["format"] or guess_format(upload.name)
            report = import_items(project, upload, fmt, form.columns(), form.label_rules())
            if report.imported:
                request_retrain(project)
        except (ParseError, ImportFailed) as exc:
            form.add_error(None, str(exc))
    return _page(request, project, form, report)


def _page(
    request: AuthedRequest, project: Project, form: ImportForm, report: ImportReport | None = None
) -> HttpResponse:
    context = {"project": project, "form": form, "report": report}
    return render(
        request, "labeling/project_import.html", context, status=422 if form.errors else 200
    )
