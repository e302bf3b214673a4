from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from config import health
from labeling.views.auth import LoginView

urlpatterns = [
    path("health/", health.alive, name="health"),
    path("health/db/", health.database, name="health_db"),
    path("health/broker/", health.broker, name="health_broker"),
    path("health/worker/", health.worker, name="health_worker"),
    path("admin/", admin.site.urls),
    # Before Django's own: the same page, with a limit on failed attempts.
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include("labeling.api.urls")),
    path("", include("labeling.urls")),
]
