"""The members page: a lead adds people to the project with a role."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render

from labeling.access import LEADS, AuthedRequest, project_for
from labeling.forms import MemberForm


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
