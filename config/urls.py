from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from config import health

urlpatterns = [
    path("health/", health.alive, name="health"),
    path("health/db/", health.database, name="health_db"),
    path("health/broker/", health.broker, name="health_broker"),
    path("health/worker/", health.worker, name="health_worker"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include("labeling.api.urls")),
    path("", include("labeling.urls")),
]
