"""Who may see and do what in a project; outsiders always get a 404."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from django.contrib.auth.models import User
from django.db.models import F
from django.http import Http404, HttpRequest
from django_htmx.middleware import HtmxDetails

from labeling.models import Project, Role

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

ANY_ROLE = (Role.LEAD, Role.ANNOTATOR, Role.REVIEWER)
LEADS = (Role.LEAD,)
OVERSEERS = (Role.LEAD, Role.REVIEWER)


class AuthedRequest(HttpRequest):
    """A request that passed login_required, as the views see it (typed for mypy)."""

    user: User
    htmx: HtmxDetails


def project_for(user: User, project_id: int, roles: Collection[str] = ANY_ROLE) -> Project:
    """The project if the user holds one of the roles in it; Http404 for everyone else."""
    project = (
        Project.objects.filter(
            pk=project_id, memberships__user_id=user.pk, memberships__role__in=list(roles)
        )
        .annotate(viewer_role=F("memberships__role"))
        .first()
    )
    if project is None:
        raise Http404("No such project.")
    project.note_role(user, project.viewer_role)
    return project


def can_create_projects(user: User | AnonymousUser) -> bool:
    return bool(user.is_authenticated and user.has_perm("labeling.add_project"))
