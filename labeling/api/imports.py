"""Import jobs: a big import's progress and, once done, its counts and report."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import mixins, permissions, serializers, viewsets

from labeling.api.permissions import IsLead
from labeling.import_jobs import with_progress
from labeling.importing import ImportReport
from labeling.models import ImportJob


class ImportJobSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Poll this for progress.")
    rejections = serializers.SerializerMethodField(
        help_text="The first rejected records, with their line and reason."
    )
    reasons = serializers.SerializerMethodField(
        help_text="Why records were rejected, the most common reason first."
    )

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "project",
            "file_name",
            "format",
            "status",
            "bytes_done",
            "bytes_total",
            "imported",
            "labeled",
            "duplicates",
            "rejected",
            "rejections",
            "reasons",
            "error",
            "created_at",
            "finished_at",
            "url",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, job: ImportJob) -> str:
        path = reverse("import-job-detail", args=[job.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    @extend_schema_field(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"line": {"type": "integer"}, "reason": {"type": "string"}},
            },
        }
    )
    def get_rejections(self, job: ImportJob) -> list[dict[str, Any]]:
        return [{"line": r.line, "reason": r.reason} for r in ImportReport.of_job(job).rejections]

    @extend_schema_field(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"reason": {"type": "string"}, "rows": {"type": "integer"}},
            },
        }
    )
    def get_reasons(self, job: ImportJob) -> list[dict[str, Any]]:
        reasons = ImportReport.of_job(job).reasons.most_common()
        return [{"reason": reason, "rows": rows} for reason, rows in reasons]


class ImportJobViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Import jobs: a big import's progress, then its counts and report (any lead of the
    project may read them, as the Import page lists every import)."""

    serializer_class = ImportJobSerializer
    permission_classes = [permissions.IsAuthenticated & IsLead]
    # Not `pk`: the role permissions read a `pk` URL argument as a project id.
    lookup_url_kwarg = "job_pk"
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[ImportJob]:
        # Outsiders get a 404; members without the lead role a 403 from the permission.
        return ImportJob.objects.filter(project__memberships__user=self.request.user)

    def get_object(self) -> ImportJob:
        job: ImportJob = super().get_object()
        with_progress([job])
        return job
