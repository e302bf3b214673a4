"""The export page: a lead picks a format and filters, and gets the file or a background job."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render

from labeling.access import LEADS, AuthedRequest, project_for
from labeling.exports.request import ExportRefused, read_export_request
from labeling.exports.responses import answer_export
from labeling.forms import ExportForm
from labeling.models import ExportJob, Project

FIELD_OF_PARAM = {"async": "background"}
ACTIVE = (ExportJob.Status.PENDING, ExportJob.Status.RUNNING)


@login_required
def project_export(request: AuthedRequest, project_id: int) -> HttpResponseBase:
    project = project_for(request.user, project_id, LEADS)
    if request.htmx and request.GET.get("part") == "jobs":
        return _page(request, project, None, template="labeling/project_export.html#jobs")
    form = ExportForm(request.POST or None, project=project)
    if request.method == "POST" and form.is_valid():
        try:
            wanted = read_export_request(project, form.as_params())
        except ExportRefused as exc:
            form.add_error(FIELD_OF_PARAM.get(exc.field, exc.field), exc.message)
        else:
            answer = answer_export(project, request.user, wanted)
            if not isinstance(answer, ExportJob):
                return answer  # the file itself: the browser saves it
            if answer.status == ExportJob.Status.FAILED:
                messages.error(request, f"The export could not start: {answer.error}")
            else:
                messages.success(
                    request,
                    f"A worker is writing the {answer.format.upper()} file of "
                    f"{answer.rows_total:,} items; it appears below when it is ready.",
                )
            return redirect("project_export", project_id=project.pk)
    return _page(request, project, form)


def _page(
    request: AuthedRequest,
    project: Project,
    form: ExportForm | None,
    template: str = "labeling/project_export.html",
) -> HttpResponse:
    # A job is its requester's (the API answers another lead's with a 404 too).
    jobs = list(
        ExportJob.objects.filter(project=project, requested_by=request.user).order_by(
            "-created_at"
        )[:20]
    )
    working = any(job.status in ACTIVE for job in jobs)
    context = {"project": project, "form": form, "jobs": jobs, "working": working}
    status = 422 if form is not None and form.errors else 200
    return render(request, template, context, status=status)
