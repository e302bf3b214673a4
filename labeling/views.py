"""Pages: project list and overview, the annotator screen, import, members, and API tokens."""

from __future__ import annotations

import csv
import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.forms import modelform_factory
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from labeling.access import (
    ANY_ROLE,
    LEADS,
    OVERSEERS,
    AuthedRequest,
    can_create_projects,
    project_for,
)
from labeling.forms import (
    AnswerForm,
    ImportForm,
    LabelFormSet,
    MemberForm,
    ProjectForm,
    ProjectSettingsForm,
    RulingForm,
)
from labeling.importing import ImportFailed, import_items
from labeling.models import Annotation, ApiToken, Item, Project, Role
from labeling.parsers import ParseError, guess_format
from labeling.people import (
    agreement,
    annotator_stats,
    disagreements,
    likely_label_errors,
    recent_rulings,
    throughput,
    throughput_chart,
)
from labeling.queue import lease_next_item, suggestion_for
from labeling.ratelimit import (
    client_ip,
    login_limit,
    token_creation_limit,
    too_many_requests,
    wait_in_words,
)
from labeling.reports import (
    compute_csv_rows,
    compute_totals,
    confusion_csv_rows,
    label_distribution,
    label_distribution_chart,
    label_distribution_csv_rows,
    latest_quality,
    learning_curve_chart,
    learning_curve_csv_rows,
    per_class_csv_rows,
    price_per_device_hour,
    random_baseline,
    version_reports,
)
from labeling.services import (
    adjudicate,
    progress_for,
    recent_answers,
    submit_answer,
    undo_last_answer,
)
from modeling.core.stopping import STABLE_RUN, StopSetPredictions, stopping_advice
from modeling.models import ModelState
from modeling.scheduling import (
    cancel_finetune,
    promote_version,
    request_finetune,
    request_retrain,
)

ApiTokenForm = modelform_factory(ApiToken, fields=["name"])
# The model report's compute table shows the latest versions; its total and CSV cover all.
COMPUTE_ROWS = 12


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
    return render(request, "labeling/project_detail.html#model-status", context)


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
    return {
        "state": state,
        "latest_version": serving,
        "stopping": stopping_advice(predictions) if recent else None,
        "queue_length": project.queue_entries.count(),
        "queue_version": queue_version,
        # Scores from a version older than the serving one, until its re-scoring replaces them.
        "queue_stale": bool(serving and queue_version and queue_version < serving.number),
        "busy": state.is_running() or state.queued_at is not None,
        "finetune_run": project.finetune_runs.first(),
        "finetuned_versions": project.model_versions.filter(kind="finetune")[:8],
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
    suggestion = suggestion_for(item) if item and project.show_suggestions else None
    context = {
        "project": project,
        "item": item,
        "labels": labels,
        "chosen": chosen,
        "reopened": reopened,
        "errors": errors,
        "notice": notice,
        "suggestion": suggestion,
        "client_id": uuid.uuid4(),
        "history": recent_answers(project, request.user),
        "progress": progress_for(project, request.user),
    }
    template = "labeling/annotate.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#workspace"
    return render(request, template, context, status=status)


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
def project_members(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    form = MemberForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        users = get_user_model().objects
        user = users.filter(username=data["username"]).first()
        if user is None:
            user = users.create_user(username=data["username"], password=data["password"])
        project.add_member(user, data["role"])
        messages.success(request, f"{user.username} is now {data['role']} in {project.name}.")
        return redirect("project_members", project_id=project.pk)
    memberships = project.memberships.select_related("user").order_by("user__username")
    return render(
        request,
        "labeling/project_members.html",
        {"project": project, "form": form, "memberships": memberships},
    )


@login_required
def people(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, OVERSEERS)
    context = {
        "project": project,
        "annotators": annotator_stats(project),
        "agreement": agreement(project),
        "disagreements": disagreements(project),
        "label_errors": likely_label_errors(project),
        "rulings": recent_rulings(project),
        "labels": project.labels.all(),
        "chart": throughput_chart(throughput(project)),
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
    return redirect(reverse("people", args=[project.pk]) + "#rulings")


@login_required
def throughput_csv(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, OVERSEERS)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="throughput-{project.pk}.csv"'
    csv.writer(response).writerows(throughput(project).csv_rows())
    return response


@login_required
def model_report(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    versions = version_reports(project)
    labels = label_distribution(project)
    context = {
        "project": project,
        "versions": versions,
        "recent_versions": versions[-COMPUTE_ROWS:],
        "totals": compute_totals(versions),
        "price": price_per_device_hour(),
        "curve": learning_curve_chart(versions, random_baseline(project)),
        "labels_chart": label_distribution_chart(labels),
        "has_answers": any(label.answers for label in labels),
        "quality": latest_quality(project),
    }
    return render(request, "labeling/model_report.html", context)


@login_required
def model_report_csv(request: AuthedRequest, project_id: int, table: str) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    if table == "labels":
        rows = label_distribution_csv_rows(label_distribution(project))
    elif table == "learning-curve":
        rows = learning_curve_csv_rows(version_reports(project), random_baseline(project))
    elif table == "per-class":
        rows = per_class_csv_rows(latest_quality(project))
    elif table == "confusion":
        rows = confusion_csv_rows(latest_quality(project))
    elif table == "compute":
        rows = compute_csv_rows(version_reports(project))
    else:
        raise Http404("No such table.")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{table}-{project.pk}.csv"'
    csv.writer(response).writerows(rows)
    return response


@login_required
@never_cache
def api_tokens(request: AuthedRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST or None)
    new_key = None
    wait = None
    if request.method == "POST" and form.is_valid():
        wait = token_creation_limit().attempt(str(request.user.pk))
        if wait is None:
            _, new_key = ApiToken.issue(request.user, form.cleaned_data["name"])
            form = ApiTokenForm()
        else:
            form.add_error(
                None, f"You created many tokens just now; try again in {wait_in_words(wait)}."
            )
    context = {"form": form, "new_key": new_key, "tokens": request.user.api_tokens.all()}
    status = 422 if form.errors else 200
    response = render(request, "labeling/tokens.html", context, status=status)
    return response if wait is None else too_many_requests(response, wait)


@login_required
@require_POST
def revoke_api_token(request: AuthedRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    token.revoke()
    messages.success(request, f"Token {token.prefix}… revoked; requests that use it now fail.")
    return redirect("api_tokens")


class LoginView(auth_views.LoginView):
    """Django's log-in page; an address that keeps failing for one username gets a 429."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = login_limit().retry_after(self._attempt_key())
        if wait is None:
            return super().post(request, *args, **kwargs)
        form = self.form_class(request, initial={"username": request.POST.get("username", "")})
        context = self.get_context_data(form=form, retry_in=wait_in_words(wait))
        return too_many_requests(self.render_to_response(context), wait)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        login_limit().hit(self._attempt_key())
        return super().form_invalid(form)

    def _attempt_key(self) -> str:
        username = self.request.POST.get("username", "").strip().lower()
        return f"{client_ip(self.request)} {username}"
