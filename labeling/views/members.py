"""The members page: a lead adds people with a role, changes roles and removes members."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from labeling.access import LEADS, AuthedRequest, project_for
from labeling.forms import MemberForm
from labeling.models import Project, Role


@login_required
def project_members(request: AuthedRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    form = MemberForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        user = data["user"] or get_user_model().objects.create_user(
            username=data["username"], password=data["password"]
        )
        try:
            project.add_member(user, data["role"])
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            role = Role(data["role"]).label.lower()
            messages.success(request, f"{user.username} is now {role} in {project.name}.")
            return _after_change(request, project)
    return _page(request, project, form)


@login_required
@require_POST
def remove_member(request: AuthedRequest, project_id: int, user_id: int) -> HttpResponse:
    project = project_for(request.user, project_id, LEADS)
    membership = get_object_or_404(project.memberships.select_related("user"), user_id=user_id)
    try:
        project.remove_member(membership.user)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
        return redirect("project_members", project_id=project.pk)
    messages.success(
        request,
        f"{membership.user.username} was removed from {project.name}; their answers are kept.",
    )
    return _after_change(request, project)


def _after_change(request: AuthedRequest, project: Project) -> HttpResponse:
    """Back to the members page, or, for a lead who just gave up the role, where they may go."""
    role = project.role_of(request.user)
    if role == Role.LEAD:
        return redirect("project_members", project_id=project.pk)
    if role is not None:
        return redirect("project_detail", project_id=project.pk)
    return redirect("project_list")


def _page(request: AuthedRequest, project: Project, form: MemberForm) -> HttpResponse:
    answers = Count("user__annotations", filter=Q(user__annotations__item__project=project))
    memberships = (
        project.memberships.select_related("user")
        .annotate(answers=answers)
        .order_by("user__username")
    )
    return render(
        request,
        "labeling/project_members.html",
        {"project": project, "form": form, "memberships": memberships},
        status=422 if form.errors else 200,
    )
