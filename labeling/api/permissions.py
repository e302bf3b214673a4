"""Role permissions, composed with & and |; an outsider never learns a project exists (404)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import Http404
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from labeling.access import project_for
from labeling.models import Project, Role


class RolePermission(BasePermission):
    """Allows members holding one of `roles` in the view's project.

    Views expose the project id as the `project_pk` (nested routes) or `pk` (project routes)
    URL argument. Non-members get a 404 from `project_for`, members without the role a 403.
    """

    roles: ClassVar[tuple[str, ...]] = ()
    message = "Your role in this project does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        project_id = view.kwargs.get("project_pk") or view.kwargs.get("pk")
        if project_id is None:
            return True
        # A view under /projects/{project_pk}/ keeps the project it fetches for the request.
        project = getattr(view, "project", None) if "project_pk" in view.kwargs else None
        if project is None:
            project = project_for(request.user, int(project_id))
        return project.role_of(request.user) in self.roles

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        project = obj if isinstance(obj, Project) else getattr(obj, "project", None)
        if project is None:
            return True
        role = project.role_of(request.user)
        if role is None:
            raise Http404
        return role in self.roles


class IsMember(RolePermission):
    roles = (Role.LEAD, Role.ANNOTATOR, Role.REVIEWER)


class IsLead(RolePermission):
    roles = (Role.LEAD,)


class ReadOnly(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return request.method in SAFE_METHODS

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return request.method in SAFE_METHODS


# Members may read; only leads may change the project, its labels and its items.
MembersReadLeadsWrite = IsLead | (IsMember & ReadOnly)  # type: ignore[operator]
