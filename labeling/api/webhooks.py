"""A project's webhooks: leads list, add, change and remove them."""

from __future__ import annotations

from typing import Any

from django.core.validators import URLValidator
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.api.permissions import IsLead
from labeling.api.views import ProjectScoped
from labeling.models import Webhook
from labeling.webhook_delivery import UnsafeURL, new_secret, refuse_unsafe_url


class WebhookSerializer(serializers.ModelSerializer):
    url = serializers.URLField(
        max_length=500,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="An http(s) URL on a public host; loopback, private, link-local and cloud "
        "metadata addresses are refused.",
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Webhook.Event.choices),
        allow_empty=False,
        help_text="The events this URL receives.",
    )

    class Meta:
        model = Webhook
        fields = ["id", "url", "events", "active", "last_status", "last_delivery_at", "created_at"]
        read_only_fields = ["id", "last_status", "last_delivery_at", "created_at"]

    def validate_url(self, url: str) -> str:
        # Deliveries check again, since what a name resolves to may change after this.
        try:
            refuse_unsafe_url(url)
        except UnsafeURL as exc:
            raise serializers.ValidationError(str(exc)) from None
        return url

    def validate_events(self, events: list[str]) -> list[str]:
        return list(dict.fromkeys(events))


class NewWebhookSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="Signs every delivery (X-Sift-Signature); shown in this response only.",
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


class WebhookViewSet(ProjectScoped, viewsets.ModelViewSet):
    """Signed POSTs to your URL when a model is promoted or an export is ready."""

    serializer_class = WebhookSerializer
    permission_classes = [permissions.IsAuthenticated & IsLead]
    pagination_class = None
    queryset = Webhook.objects.none()  # tells the schema the model, so `id` is an integer

    def get_queryset(self) -> QuerySet[Webhook]:
        return self.project.webhooks.order_by("id")

    @extend_schema(request=WebhookSerializer, responses={201: NewWebhookSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        webhook = serializer.save(project=self.project, secret=new_secret())
        return Response(NewWebhookSerializer(webhook).data, status=status.HTTP_201_CREATED)
