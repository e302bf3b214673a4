"""The import page: a lead uploads a file of items, optionally labeled."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from labeling.access import LEADS, AuthedRequest, project_for
from labeling.forms import ImportForm
from labeling.import_preview import HEAD_BYTES, Preview, preview_of
from labeling.importing import ImportFailed, ImportReport, import_items
from labeling.models import Project
from labeling.parsers import ParseError, guess_format
from labeling.staging import discard, open_staged, stage
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
    """Import the upload, or (Preview) keep it and show what an import would read."""
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
    report = preview = None
    try:
        fmt = form.cleaned_data["format"] or guess_format(form.file_name())
        if "preview" in request.POST:
            head = source.read(HEAD_BYTES)
            source.seek(0)
            preview = preview_of(project, head, source, fmt, form.columns(), form.label_rules())
        else:
            report = import_items(project, source, fmt, form.columns(), form.label_rules())
            discard(project, request.user, token)
            token = ""
            if report.imported:
                request_retrain(project)
    except (ParseError, ImportFailed) as exc:
        form.add_error(None, str(exc))
    finally:
        source.close()
    return _page(request, project, form.keeping(token), report, preview)


def _page(
    request: AuthedRequest,
    project: Project,
    form: ImportForm,
    report: ImportReport | None = None,
    preview: Preview | None = None,
) -> HttpResponse:
    context = {"project": project, "form": form, "report": report, "preview": preview}
    return render(
        request, "labeling/project_import.html", context, status=422 if form.errors else 200
    )
