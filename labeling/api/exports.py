"""Exports: a project's items with their final labels, streamed, or written by a worker."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import FileResponse, HttpResponseBase
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.api.permissions import IsLead
from labeling.api.views import Conflict, ProjectScoped
from labeling.exports.request import (
    FORMATS,
    ExportRefused,
    read_export_request,
)
from labeling.exports.responses import answer_export
from labeling.exports.writers import (
    CONTENT_TYPES,
    export_filename,
)
from labeling.models import ExportJob


class ExportJobSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Poll this for progress.")
    download_url = serializers.SerializerMethodField(help_text="Set once the file is ready.")

    class Meta:
        model = ExportJob
        fields = [
            "id",
            "project",
            "format",
            "filters",
            "status",
            "rows_done",
            "rows_total",
            "error",
            "created_at",
            "finished_at",
            "url",
            "download_url",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, job: ExportJob) -> str:
        return self._absolute(reverse("export-job-detail", args=[job.pk]))

    @extend_schema_field(OpenApiTypes.URI)
    def get_download_url(self, job: ExportJob) -> str | None:
        if job.status != ExportJob.Status.DONE:
            return None
        return self._absolute(reverse("export-job-download", args=[job.pk]))

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class FileNegotiation(BaseContentNegotiation):
    """For routes that answer files: `?format=` names the file's format and `Accept` does not
    pick a renderer (DRF would answer 404 or 406); errors are JSON."""

    def select_parser(self, request: Request, parsers: list[BaseParser]) -> BaseParser | None:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


def _flag(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, bool, description=description)


class ProjectExportView(ProjectScoped, APIView):
    """Leads export the project's items, one row each with its final label."""

    permission_classes = [permissions.IsAuthenticated & IsLead]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FileNegotiation

    @extend_schema(
        operation_id="projects_export",
        parameters=[
            OpenApiParameter("format", str, enum=list(FORMATS), description="Default jsonl"),
            OpenApiParameter(
                "since", str, description="ISO time: items with an answer changed at or after it"
            ),
            OpenApiParameter("annotator", str, description="Username: items they answered"),
            OpenApiParameter("label", str, description="Items whose final labels include it"),
            OpenApiParameter("min_agreement", float, description="0 to 1; needs two answers"),
            _flag("final_only", "Only items with a final label"),
            _flag("answers", "List every answer in each row"),
            _flag("async", "Always write the file with a worker (202 and a job)"),
            _flag("random_control", "Only the random-control items (the evaluation set)"),
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.BINARY,
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY,
            (200, "application/zip"): OpenApiTypes.BINARY,
            202: ExportJobSerializer,
            400: OpenApiResponse(description="A bad parameter, named in the answer"),
        },
        description=(
            "Rows: id, external_id, text, label (multi-label: names joined with '|'; a "
            "reviewer's ruling wins over the answers), labels, agreement, adjudicated (a "
            "reviewer ruled), answers_count (answers not skipped), prediction, confidence, "
            "model_version, random_control (served as a uniform random draw, part of the "
            "evaluation set), metadata, and with answers=1 every answer. format=hf: a zip for "
            "Hugging Face datasets (train.jsonl, test.jsonl = the random controls, labels.json). "
            "Above "
            "SIFT_EXPORT_SYNC_LIMIT items (or with async=1) a worker writes the file: the "
            "answer is 202 with the job to poll."
        ),
    )
    def get(self, request: Request, project_pk: str) -> HttpResponseBase:
        try:
            wanted = read_export_request(self.project, request.query_params)
        except ExportRefused as exc:
            raise ValidationError({exc.field: exc.message}) from exc
        answer = answer_export(self.project, request.user, wanted)
        if not isinstance(answer, ExportJob):
            return answer
        data = ExportJobSerializer(answer, context={"request": request}).data
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]})


class ExportJobViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Export jobs: poll one for progress, download its file once it is done."""

    serializer_class = ExportJobSerializer
    permission_classes = [permissions.IsAuthenticated & IsLead]
    # Not `pk`: the role permissions read a `pk` URL argument as a project id.
    lookup_url_kwarg = "job_pk"
    lookup_value_regex = r"\d+"
    content_negotiation_class = FileNegotiation

    def get_queryset(self) -> QuerySet[ExportJob]:
        # Outsiders get a 404; members without the lead role a 403 from the permission.
        return ExportJob.objects.filter(project__memberships__user=self.request.user)

    def get_object(self) -> ExportJob:
        job: ExportJob = super().get_object()
        if job.requested_by_id != self.request.user.pk:
            # A job is its requester's: another lead gets a 404, as outsiders do.
            raise NotFound("No such export job.")
        return job

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            409: OpenApiResponse(description="Not ready yet"),
        }
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, job_pk: str) -> HttpResponseBase:
        job: ExportJob = self.get_object()
        if job.status != ExportJob.Status.DONE or not job.file:
            raise Conflict(f"The export is not ready ({job.get_status_display().lower()}).")
        return FileResponse(
            job.file.open("rb"),
            as_attachment=True,
            filename=export_filename(job.project, job.format, timezone.localdate(job.created_at)),
            content_type=CONTENT_TYPES.get(job.format, "application/octet-stream"),
        )
