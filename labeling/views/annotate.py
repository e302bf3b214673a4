"""The labeling screen: the next item, an answer, undo and reopen, each an htmx partial."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from labeling.access import ANY_ROLE, AuthedRequest, project_for
from labeling.forms import AnswerForm
from labeling.models import Annotation, Item, Project, Role
from labeling.queue import lease_next_item, suggestion_to_show
from labeling.services import (
    NotServed,
    progress_for,
    recent_answers,
    submit_answer,
    undo_last_answer,
)


@login_required
def annotate(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, ANY_ROLE)
    item = lease_next_item(project, request.user)
    return _workspace(request, project, item)


@login_required
def reopen(request: AuthedRequest, project_id: int, item_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, ANY_ROLE)
    answer = get_object_or_404(
        Annotation.objects.select_related("item"),
        item_id=item_id,
        item__project=project,
        annotator=request.user,
    )
    return _workspace(request, project, answer.item, reopened=answer)


@login_required
@require_POST
def answer(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, ANY_ROLE)
    form = AnswerForm(request.POST, project=project)
    if form.is_valid():
        data = form.cleaned_data
        try:
            submit_answer(
                project,
                request.user,
                data["item"],
                list(data["labels"]),
                skipped=data["skipped"],
                seconds_spent=data["seconds"] or 0.0,
                client_id=data["client_id"],
            )
        except NotServed as exc:
            form.add_error(None, exc)
            form.cleaned_data.pop("item", None)  # show what the queue serves instead
        except ValidationError as exc:
            form.add_error(None, exc)
    if form.errors:
        item = form.cleaned_data.get("item") or lease_next_item(project, request.user)
        return _workspace(request, project, item, errors=form.errors, status=422)
    if not request.htmx:
        return redirect("annotate", project_id=project.pk)
    return _workspace(request, project, lease_next_item(project, request.user))


@login_required
@require_POST
def undo(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, ANY_ROLE)
    item = undo_last_answer(project, request.user)
    if not request.htmx:
        if item is None:
            messages.info(request, "Nothing to undo.")
        return redirect("annotate", project_id=project.pk)
    notice = "Nothing to undo." if item is None else ""
    return _workspace(
        request, project, item or lease_next_item(project, request.user), notice=notice
    )


def _workspace(
    request: AuthedRequest,
    project: Project,
    item: Item | None,
    *,
    reopened: Annotation | None = None,
    errors: object = None,
    notice: str = "",
    status: int = 200,
) -> HttpResponse:
    labels = list(project.labels.all())
    chosen = {label.pk for label in reopened.labels.all()} if reopened else set()
    suggestion = suggestion_to_show(project, item) if item else None
    context = {
        "project": project,
        "item": item,
        "labels": labels,
        "chosen": chosen,
        "reopened": reopened,
        "errors": errors,
        "notice": notice,
        "suggestion": suggestion,
        "suggested": {label.pk for label in suggestion.labels}
        if suggestion and suggestion.shown
        else set(),
        "client_id": uuid.uuid4(),
        "history": recent_answers(project, request.user),
        "progress": progress_for(project, request.user),
        # With nothing to serve, a lead is pointed at the import page.
        "is_lead": item is None and project.role_of(request.user) == Role.LEAD,
    }
    template = "labeling/annotate.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#workspace"
    return render(request, template, context, status=status)
