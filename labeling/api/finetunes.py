"""A project's fine-tunes of its transformer: members follow them, leads start and cancel them."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.api.permissions import IsLead, IsMember
from labeling.api.views import ProjectScoped
from modeling.models import FineTuneRun
from modeling.scheduling import cancel_finetune, request_finetune


class FineTuneRunSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        help_text="Who asked; null when the project started it by itself as its labels grew.",
    )
    labels_used = serializers.SerializerMethodField(
        help_text="Labels it learns from, fixed when it starts (0 while queued)."
    )
    version = serializers.SerializerMethodField(help_text="The model version it made, if any.")
    promoted = serializers.SerializerMethodField(
        help_text="Whether that version ranks the queue (its evaluation was not worse)."
    )
    progress_percent = serializers.FloatField(read_only=True)

    class Meta:
        model = FineTuneRun
        fields = [
            "id",
            "status",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "step",
            "total_steps",
            "progress_percent",
            "attempts",
            "resumed_from_step",
            "cancel_requested",
            "last_error",
            "labels_used",
            "warm_start_version",
            "version",
            "promoted",
        ]
        read_only_fields = fields

    def get_labels_used(self, run: FineTuneRun) -> int:
        return len(run.item_ids)

    def get_version(self, run: FineTuneRun) -> int | None:
        return run.version.number if run.version is not None else None

    def get_promoted(self, run: FineTuneRun) -> bool | None:
        return run.version.promoted if run.version is not None else None


class FineTuneViewSet(
    ProjectScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Fine-tunes, newest first. A project also starts one by itself once its labels grew by
    `finetune_growth` (and `finetune_min_labels`) since the last one."""

    serializer_class = FineTuneRunSerializer
    permission_classes = [permissions.IsAuthenticated & IsMember]
    queryset = FineTuneRun.objects.none()
    lookup_value_regex = r"\d+"

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [permissions.IsAuthenticated(), IsLead()]
        return super().get_permissions()

    def get_queryset(self) -> QuerySet[FineTuneRun]:
        return FineTuneRun.objects.filter(project=self.project).select_related(
            "requested_by", "version"
        )

    @extend_schema(
        request=None,
        responses={
            202: FineTuneRunSerializer,
            409: OpenApiResponse(FineTuneRunSerializer, description="One is already under way"),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Fine-tune now, on the labels so far; follow it with GET .../finetunes/{id}/."""
        run = request_finetune(self.project, request.user)
        if run is None:
            active = FineTuneRun.objects.active(self.project)
            body = self.get_serializer(active).data if active else {}
            return Response(
                {"detail": "A fine-tune of this project is already under way.", "run": body},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(self.get_serializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: FineTuneRunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Stop the run at its next step (its checkpoint is kept)."""
        run = self.get_object()
        if not run.is_active():
            return Response(
                {"detail": f"This fine-tune is {run.status} already."},
                status=status.HTTP_409_CONFLICT,
            )
        cancel_finetune(self.project)
        run.refresh_from_db()
        return Response(self.get_serializer(run).data, status=status.HTTP_202_ACCEPTED)
