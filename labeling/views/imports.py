"""The import page: a lead uploads a file of items, optionally labeled."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render

from labeling.access import LEADS, AuthedRequest, project_for
from labeling.forms import ImportForm
from labeling.importing import ImportFailed, import_items
from labeling.parsers import ParseError, guess_format
from modeling.scheduling import request_retrain


@login_required
def project_import(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    form = ImportForm(request.POST or None, request.FILES or None)
    report = None
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            fmt = form.cleaned_data["format"] or guess_format(upload.name)
            report = import_items(project, upload, fmt, form.columns())
            if report.imported:
                request_retrain(project)
        except (ParseError, ImportFailed) as exc:
            form.add_error(None, str(exc))
    context = {"project": project, "form": form, "report": report}
    return render(
        request, "labeling/project_import.html", context, status=422 if form.errors else 200
    )
