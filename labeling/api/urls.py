from __future__ import annotations

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView
from rest_framework.routers import SimpleRouter

from labeling.api import exports, views
from labeling.api.finetunes import FineTuneViewSet
from labeling.api.imports import ImportJobViewSet
from labeling.api.webhooks import WebhookViewSet

router = SimpleRouter()
router.register("projects", views.ProjectViewSet, basename="project")
router.register("exports", exports.ExportJobViewSet, basename="export-job")
router.register("imports", ImportJobViewSet, basename="import-job")

nested = SimpleRouter()
nested.register("labels", views.LabelViewSet, basename="label")
nested.register("items", views.ItemViewSet, basename="item")
nested.register("annotations", views.AnnotationViewSet, basename="annotation")
nested.register("queue", views.QueueViewSet, basename="queue")
nested.register("model-versions", views.ModelVersionViewSet, basename="model-version")
nested.register("webhooks", WebhookViewSet, basename="webhook")
nested.register("finetunes", FineTuneViewSet, basename="finetune")

training = views.TrainingViewSet.as_view({"get": "status", "post": "trigger"})

# ReDoc (drf-spectacular-sidecar's static file) styles itself through <style> elements it creates
# and searches in a worker it starts from a blob: URL; this page, which shows only the schema,
# allows both. Scripts still come from Sift alone.
redoc_policy = csp_update({"style-src": [UNSAFE_INLINE], "worker-src": ["blob:"]})

urlpatterns = [
    path("", include(router.urls)),
    path("projects/<int:project_pk>/", include(nested.urls)),
    path("projects/<int:project_pk>/training/", training, name="training"),
    path(
        "projects/<int:project_pk>/export/",
        exports.ProjectExportView.as_view(),
        name="project-export",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "docs/",
        redoc_policy(
            SpectacularRedocView.as_view(url_name="schema", template_name="api/docs.html")
        ),
        name="api-docs",
    ),
]
