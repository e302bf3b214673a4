"""Project pages: the list, a new project, its overview with the model panel, its settings."""

from __future__ import annotations

from http import HTTPStatus

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from labeling import project_care as care
from labeling.access import LEADS, AuthedRequest, can_create_projects, project_for
from labeling.forms import LabelFormSet, ProjectForm, ProjectSettingsForm
from labeling.models import Project, Role
from labeling.project_care import label_use, project_contents
from labeling.reports import price_per_device_hour
from labeling.services import progress_for
from modeling.interface import STABLE_RUN, StopSetPredictions, stopping_advice
from modeling.models import FineTuneRun, ModelState
from modeling.scheduling import (
    cancel_finetune,
    promote_version,
    request_finetune,
    request_retrain,
)


@login_required
def project_list(request: AuthedRequest) -> HttpResponse:
    projects = Project.objects.filter(memberships__user=request.user).order_by("name")
    return render(
        request,
        "labeling/project_list.html",
        {"projects": projects, "can_create": can_create_projects(request.user)},
    )


@login_required
def project_create(request: AuthedRequest) -> HttpResponse:
    if not can_create_projects(request.user):
        raise PermissionDenied("Only leads can create projects.")
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            project = form.save(commit=False)
            project.created_by = request.user
            project.save()
            project.set_labels(form.label_names())
            project.add_member(request.user, Role.LEAD)
        messages.success(request, f"Project {project.name} created. Import items to start.")
        return redirect("project_import", project_id=project.pk)
    return render(request, "labeling/project_form.html", {"form": form})


@login_required
def project_detail(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id)
    context = {
        "project": project,
        "role": project.role_of(request.user),
        "progress": progress_for(project, request.user),
        "labels": project.labels.all(),
        **model_status_context(project),
    }
    return render(request, "labeling/project_detail.html", context)


@login_required
def model_status(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    context = {"project": project, **model_status_context(project)}
    # Idle: the panel polls no more (286) until the lead starts work or comes back to the tab.
    status = HTTPStatus.OK if context["watching"] else HttpResponseStopPolling.status_code
    return render(request, "labeling/project_detail.html#model-status", context, status=status)


@login_required
@require_POST
def retrain(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    request_retrain(project)
    if request.htmx:
        return model_status(request, project_id)
    return redirect("project_detail", project_id=project.pk)


def model_status_context(project: Project) -> dict[str, object]:
    state = ModelState.objects.of(project)
    # Stopping advice follows the head, retrained on every batch of labels; fine-tuned
    # versions come at other times and would compare two different models.
    recent = list(project.model_versions.filter(kind="head")[: STABLE_RUN + 1])  # newest first
    predictions = [StopSetPredictions.from_metrics(v.number, v.metrics) for v in reversed(recent)]
    serving = project.model_versions.filter(promoted=True).first()
    queue_version = project.queue_entries.aggregate(version=Max("model_version"))["version"]
    queue_stale = bool(serving and queue_version and queue_version < serving.number)
    busy = state.is_running() or state.queued_at is not None
    # A run whose worker stopped beating: the workers' sweep sends it again within a minute.
    stalled = state.running_since is not None and not state.is_running()
    finetune_run = project.finetune_runs.first()
    return {
        "state": state,
        "latest_version": serving,
        "stopping": stopping_advice(predictions) if recent else None,
        "queue_length": project.queue_entries.count(),
        "queue_version": queue_version,
        # Scores from a version older than the serving one, until its re-scoring replaces them.
        "queue_stale": queue_stale,
        "busy": busy,
        # Something the panel should follow: a retrain, a fine-tune, or re-scoring the pool.
        "stalled": stalled,
        "watching": busy
        or stalled
        or queue_stale
        or bool(finetune_run and finetune_run.is_active()),
        "finetune_run": finetune_run,
        "next_finetune_at": FineTuneRun.objects.next_automatic_at(project),
        "finetuned_versions": project.model_versions.filter(kind="finetune")[:8],
        "price": price_per_device_hour(),
    }


@login_required
@require_POST
def finetune(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    request_finetune(project, request.user)
    return _model_status_or_project(request, project)


@login_required
@require_POST
def cancel_finetune_view(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    cancel_finetune(project)
    return _model_status_or_project(request, project)


@login_required
@require_POST
def promote(request: AuthedRequest, project_id: int, number: int) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    promote_version(get_object_or_404(project.model_versions, number=number, kind="finetune"))
    return _model_status_or_project(request, project)


def _model_status_or_project(request: AuthedRequest, project: Project) -> HttpResponse:
    if request.htmx:
        return model_status(request, project.pk)
    return redirect("project_detail", project_id=project.pk)


@login_required
def project_settings(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    form = ProjectSettingsForm(request.POST or None, instance=project, prefix="project")
    labels = LabelFormSet(request.POST or None, queryset=project.labels.all(), prefix="labels")
    if request.method == "POST" and form.is_valid() and labels.is_valid():
        with transaction.atomic():
            form.save()
            for label in labels.save(commit=False):
                label.project = project
                if label.pk is None:
                    label.position = project.labels.count()
                label.save()
        messages.success(request, "Settings saved.")
        return redirect("project_settings", project_id=project.pk)
    context = {"project": project, "form": form, "labels": labels}
    status = 422 if request.method == "POST" else 200
    return render(request, "labeling/project_settings.html", context, status=status)


@login_required
def remove_label(request: AuthedRequest, project_id: int, label_id: int) -> HttpResponse:
    """GET: what the label is on, and where its answers would go; POST: remove (merge) it."""
    project = project_for(request.user, project_id, LEADS)
    label = get_object_or_404(project.labels, pk=label_id)
    others = project.labels.exclude(pk=label.pk)
    use = label_use(label)
    if request.method == "POST":
        chosen = request.POST.get("into", "")
        into = others.filter(pk=chosen).first() if chosen.isascii() and chosen.isdigit() else None
        try:
            care.remove_label(project, label, into)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            merged = f"; its answers and rulings now carry {into.name}" if into and use.used else ""
            messages.success(request, f"Label {label.name} removed{merged}.")
            request_retrain(project)
            return redirect("project_settings", project_id=project.pk)
    context = {"project": project, "label": label, "others": others, "use": use}
    return render(request, "labeling/label_remove.html", context)


@login_required
def delete_project(request: AuthedRequest, project_id: int) -> HttpResponse:
    """GET: what deleting the project deletes; POST with its name typed: delete it."""
    project = project_for(request.user, project_id, LEADS)
    error = ""
    if request.method == "POST":
        name = project.name
        try:
            gone = care.delete_project(project, request.POST.get("name", ""))
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            messages.success(
                request,
                f"Deleted {name}: {gone.items} item{pluralize(gone.items)} and "
                f"{gone.answers} answer{pluralize(gone.answers)}.",
            )
            return redirect("project_list")
    context = {"project": project, "contents": project_contents(project), "error": error}
    return render(request, "labeling/project_delete.html", context, status=422 if error else 200)
