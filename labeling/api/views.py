"""REST API under /api/v1/: thin views over the same services the pages use."""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import (
    APIException,
    ParseError,
    PermissionDenied,
    ValidationError,
)
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.access import can_create_projects, project_for
from labeling.api.imports import ImportJobSerializer
from labeling.api.permissions import IsLead, IsMember, MembersReadLeadsWrite
from labeling.api.serializers import (
    AnnotationSerializer,
    ImportReportSerializer,
    ItemSerializer,
    LabelSerializer,
    ModelVersionSerializer,
    ProjectSerializer,
    QueueItemSerializer,
    TrainingStatusSerializer,
)
from labeling.import_jobs import import_now, runs_in_background, start_import_job
from labeling.importing import ImportFailed, ImportOptions, ImportReport
from labeling.models import Annotation, Item, Label, Project, Role
from labeling.queue import lease_next, suggestion_to_show
from labeling.services import ClientIdConflict, NotServed, resolve_labels, submit_answer
from labeling.uploads import UploadTooLarge, check_upload_size, declared_length, whole_body
from labeling.validation import contains_nul, parse_flag, parse_iso_time, parse_whole_number
from modeling.models import ModelState, ModelVersion
from modeling.scheduling import request_retrain


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines")


class ProjectScoped:
    """Mixin for routes under /projects/{project_pk}/."""

    kwargs: dict[str, Any]
    request: Request

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        for name, value in request.query_params.items():
            if contains_nul(value):
                raise ValidationError({name: "Must not contain a NUL character."})

    @property
    def project(self) -> Project:
        cached = getattr(self, "_project", None)
        if cached is None:
            cached = project_for(self.request.user, int(self.kwargs["project_pk"]))
            self._project = cached
        return cached

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()  # type: ignore[misc]
        context["project"] = self.project
        return cast(dict[str, Any], context)


class ProjectViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Projects you are a member of. Creating one needs the add-project permission."""

    serializer_class = ProjectSerializer
    permission_classes = [permissions.IsAuthenticated & MembersReadLeadsWrite]
    queryset = Project.objects.none()  # for the schema; get_queryset picks the user's
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[Project]:
        return (
            Project.objects.filter(memberships__user=self.request.user)
            .prefetch_related("labels")
            .order_by("id")
        )

    def perform_create(self, serializer: ProjectSerializer) -> None:
        if not can_create_projects(self.request.user):
            raise PermissionDenied("You may not create projects.")
        project = serializer.save(created_by=self.request.user)
        project.add_member(self.request.user, Role.LEAD)


class LabelViewSet(
    ProjectScoped,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """A project's label set; leads add and edit labels."""

    serializer_class = LabelSerializer
    permission_classes = [permissions.IsAuthenticated & MembersReadLeadsWrite]
    pagination_class = None
    queryset = Label.objects.none()
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[Label]:
        return self.project.labels.all()

    def perform_create(self, serializer: LabelSerializer) -> None:
        serializer.save(project=self.project, position=self.project.labels.count())


@extend_schema(
    parameters=[
        OpenApiParameter("answered", bool, description="Only items with (or without) answers"),
        OpenApiParameter("external_id", str),
        OpenApiParameter("search", str, description="Text contains (case-insensitive)"),
    ]
)
class ItemViewSet(
    ProjectScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Items of a project; leads add them in bulk."""

    serializer_class = ItemSerializer
    permission_classes = [permissions.IsAuthenticated & MembersReadLeadsWrite]
    queryset = Item.objects.none()
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[Item]:
        items = Item.objects.filter(project=self.project)
        params = self.request.query_params
        if "answered" in params:
            answered = _flag(params["answered"], "answered")
            items = items.filter(answer_count__gt=0) if answered else items.filter(answer_count=0)
        if params.get("external_id"):
            items = items.filter(external_id=params["external_id"])
        if params.get("search"):
            items = items.filter(text__icontains=params["search"])
        return items

    @extend_schema(
        request={
            "application/json": {"type": "array", "items": {"type": "object"}},
            "application/x-ndjson": {"type": "string"},
        },
        responses={
            201: ImportReportSerializer,
            202: ImportJobSerializer,
            400: OpenApiResponse(description="Bad file, or a body cut short"),
            413: OpenApiResponse(description="Over the upload limit"),
        },
        description=(
            "Add items: a JSON list of objects, or a JSONL body (one object per line, "
            "streamed), up to SIFT_MAX_UPLOAD_BYTES. Each object has `text` and optionally "
            "`label`/`labels`, `id` and other keys kept as metadata. All or nothing: a body "
            "shorter than its Content-Length imports nothing. Each import is recorded as a "
            "batch (`job`; the items page filters by it). A body over "
            "SIFT_IMPORT_INLINE_BYTES is imported by a worker: the answer is 202 with the "
            "job to poll (`GET /api/v1/imports/{job}/`)."
        ),
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        declared = declared_length(request._request)
        try:
            check_upload_size(declared)  # before a byte of the body is read
        except UploadTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from exc
        content_type = (request.content_type or "").split(";")[0].strip()
        if content_type in JSONL_TYPES:
            # Django's request iterates its body line by line; a body cut short fails the import.
            stream: Any = whole_body(request._request, declared)
        else:
            records = request.data
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise ValidationError("Send a JSON list of objects, or JSONL.")
            stream = io.BytesIO(b"\n".join(json.dumps(r).encode() for r in records))
        try:
            if runs_in_background(declared):
                job = start_import_job(
                    self.project, request.user, stream, API_UPLOAD, "jsonl", ImportOptions()
                )
                data = ImportJobSerializer(job, context={"request": request}).data
                return Response(
                    data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]}
                )
            job, report = import_now(
                self.project, request.user, stream, API_UPLOAD, "jsonl", ImportOptions()
            )
        except ImportFailed as exc:
            raise ParseError(str(exc)) from exc
        return Response({**_report(report), "job": job.pk}, status=status.HTTP_201_CREATED)


# What an import sent to the API is called among the project's imports.
API_UPLOAD = "API upload"


def _report(report: ImportReport) -> dict[str, Any]:
    return {
        "imported": report.imported,
        "labeled": report.labeled,
        "duplicates": report.duplicates,
        "rejected": report.rejected,
        "rejections": [{"line": r.line, "reason": r.reason} for r in report.rejections],
    }


@extend_schema(
    description="Annotators read only their own answers unless the project's "
    "annotators_see_answers is on; leads and reviewers read all.",
    parameters=[
        OpenApiParameter("annotator", str, description="Username"),
        OpenApiParameter("item", int),
        OpenApiParameter("since", str, description="ISO time: changed at or after"),
    ],
)
class AnnotationViewSet(
    ProjectScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Answers. Creating one is idempotent by `client_id`; you may change only your own."""

    serializer_class = AnnotationSerializer
    permission_classes = [permissions.IsAuthenticated & IsMember]
    queryset = Annotation.objects.none()
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[Annotation]:
        answers = (
            Annotation.objects.filter(item__project=self.project)
            .select_related("annotator")
            .prefetch_related("labels")
        )
        if not self.project.annotators_see_answers and self._is_annotator():
            answers = answers.filter(annotator=self.request.user)  # independent labels
        params = self.request.query_params
        if params.get("annotator"):
            answers = answers.filter(annotator__username=params["annotator"])
        if params.get("item"):
            try:
                item_id = parse_whole_number(params["item"], "item", 1, 2**63 - 1)
            except DjangoValidationError as exc:
                raise ValidationError({"item": exc.messages}) from exc
            answers = answers.filter(item_id=item_id)
        if params.get("since"):
            answers = answers.filter(updated_at__gte=_parse_time(params["since"]))
        return answers

    def _is_annotator(self) -> bool:
        return self.project.role_of(self.request.user) == Role.ANNOTATOR

    @extend_schema(
        responses={
            201: AnnotationSerializer,
            200: OpenApiResponse(AnnotationSerializer, description="Your answer, changed"),
            400: OpenApiResponse(description="A bad label or field, named in the answer"),
            409: OpenApiResponse(
                description="Not served to you (lease it with GET .../queue/next/ first), "
                "answered in full by others after your lease ran out, or a client_id "
                "already used for a different answer"
            ),
        },
        description=(
            "Answer an item the queue served you, or change your own answer. A first answer "
            "needs your lease on the item; retries with the same client_id are stored once."
        ),
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        annotation, created = self._submit(serializer.validated_data)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(self.get_serializer(annotation).data, status=code)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        annotation = self.get_object()
        if annotation.annotator_id != request.user.pk:
            raise PermissionDenied("You can change only your own answers.")
        partial = kwargs.get("partial", False)
        serializer = self.get_serializer(annotation, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = {
            "item": annotation.item,
            "label_names": serializer.validated_data.get("label_names", annotation.label_names()),
            "skipped": serializer.validated_data.get("skipped", annotation.skipped),
            "seconds_spent": serializer.validated_data.get("seconds_spent", 0),
        }
        annotation, _ = self._submit(data)
        return Response(self.get_serializer(annotation).data)

    def _submit(self, data: dict[str, Any]) -> tuple[Annotation, bool]:
        try:
            return submit_answer(
                self.project,
                self.request.user,
                data["item"],
                resolve_labels(self.project, data.get("label_names", [])),
                skipped=data.get("skipped", False),
                seconds_spent=data.get("seconds_spent", 0),
                client_id=data.get("client_id"),
            )
        except (ClientIdConflict, NotServed) as exc:
            raise Conflict(exc.messages[0]) from exc
        except DjangoValidationError as exc:
            raise ValidationError({"detail": exc.messages}) from exc


def _parse_time(raw: str) -> datetime:
    try:
        return parse_iso_time(raw)
    except DjangoValidationError as exc:
        raise ValidationError({"since": exc.messages}) from exc


def _flag(raw: str, name: str) -> bool:
    try:
        return parse_flag(raw, name)
    except DjangoValidationError as exc:
        raise ValidationError({name: exc.messages}) from exc


class QueueViewSet(ProjectScoped, viewsets.GenericViewSet):
    """The annotator's queue."""

    permission_classes = [permissions.IsAuthenticated & IsMember]
    serializer_class = QueueItemSerializer

    @extend_schema(responses={200: QueueItemSerializer, 204: OpenApiResponse(description="Done")})
    @action(detail=False, methods=["get"])
    def next(self, request: Request, project_pk: str) -> Response:
        """Lease the next item to you; answer it with POST .../annotations/."""
        lease = lease_next(self.project, request.user)
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        item = lease.item
        suggestion = suggestion_to_show(self.project, item)
        return Response(
            {
                "item": ItemSerializer(item).data,
                "lease_expires_at": lease.expires_at,
                "suggestion": {
                    "labels": [label.name for label in suggestion.labels],
                    "confidence": suggestion.confidence,
                    # Below the project's threshold: the label page says the model is unsure.
                    "shown": suggestion.shown,
                }
                if suggestion
                else None,
            }
        )


class ModelVersionViewSet(ProjectScoped, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The project's model versions, newest first."""

    serializer_class = ModelVersionSerializer
    permission_classes = [permissions.IsAuthenticated & IsMember]
    pagination_class = None

    def get_queryset(self) -> QuerySet[ModelVersion]:
        return self.project.model_versions.all()


class TrainingViewSet(ProjectScoped, viewsets.GenericViewSet):
    """What the workers are doing for the project; leads can ask for a retrain."""

    serializer_class = TrainingStatusSerializer
    permission_classes = [permissions.IsAuthenticated & IsMember]

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [permissions.IsAuthenticated(), IsLead()]
        return super().get_permissions()

    @extend_schema(responses={200: TrainingStatusSerializer})
    def status(self, request: Request, project_pk: str) -> Response:
        state = ModelState.objects.of(self.project)
        latest = self.project.model_versions.first()
        return Response(
            {
                "phase": state.phase,
                "progress_done": state.progress_done,
                "progress_total": state.progress_total,
                "queued_at": state.queued_at,
                "running_since": state.running_since,
                "queue_refreshed_at": state.queue_refreshed_at,
                "last_error": state.last_error,
                "latest_version": ModelVersionSerializer(latest).data if latest else None,
            }
        )

    @extend_schema(request=None, responses={202: TrainingStatusSerializer})
    def trigger(self, request: Request, project_pk: str) -> Response:
        request_retrain(self.project)
        response = self.status(request, project_pk)
        response.status_code = status.HTTP_202_ACCEPTED
        return response
