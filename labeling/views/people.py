"""The people page: annotators' work and agreement, the items to review, rulings on them."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from labeling.access import OVERSEERS, AuthedRequest, project_for
from labeling.csv_safety import SafeCsvWriter
from labeling.forms import RulingForm
from labeling.models import Item
from labeling.people import (
    agreement,
    annotator_stats,
    disagreements,
    likely_label_errors,
    recent_rulings,
    throughput,
    throughput_chart,
)
from labeling.review_requests import requested_reviews
from labeling.services import adjudicate


@login_required
def people(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, OVERSEERS)
    answers_over_time = throughput(project)
    context = {
        "project": project,
        "annotators": annotator_stats(project),
        "agreement": agreement(project),
        "review_requests": requested_reviews(project),
        "disagreements": disagreements(project),
        "label_errors": likely_label_errors(project),
        "rulings": recent_rulings(project),
        "labels": project.labels.all(),
        "throughput": answers_over_time,
        "chart": throughput_chart(answers_over_time),
    }
    return render(request, "labeling/people.html", context)


@login_required
@require_POST
def resolve_item(request: AuthedRequest, project_id: int, item_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, OVERSEERS)
    item = get_object_or_404(Item, pk=item_id, project=project)
    form = RulingForm(request.POST, project=project)
    if form.is_valid():
        try:
            adjudicate(
                project,
                request.user,
                item,
                list(form.cleaned_data["labels"]),
                form.cleaned_data["note"],
            )
        except ValidationError as exc:
            form.add_error(None, exc)
    if form.errors:
        for errors in form.errors.values():
            messages.error(request, " ".join(str(error) for error in errors))
    else:
        messages.success(request, f"Item {item.pk} resolved.")
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        return redirect(back)  # the item's page, where the ruling was made
    return redirect(reverse("people", args=[project.pk]) + "#rulings")


@login_required
def throughput_csv(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, OVERSEERS)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="throughput-{project.pk}.csv"'
    SafeCsvWriter(response).writerows(throughput(project).csv_rows())
    return response
