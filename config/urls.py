from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from config import health
from labeling.views.auth import LoginView, PasswordChangeView

urlpatterns = [
    path("health/", health.alive, name="health"),
    path("health/db/", health.database, name="health_db"),
    path("health/broker/", health.broker, name="health_broker"),
    path("health/worker/", health.worker, name="health_worker"),
    # One page checks passwords, with the log-in limits: staff log in there too, then return.
    path("admin/login/", RedirectView.as_view(pattern_name="login", query_string=True)),
    path("admin/", admin.site.urls),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password_change/",
        PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    # No password reset: Sift sends no mail, so a reset link would reach nobody. A lead or an
    # administrator sets a new password (`manage.py changepassword`, or the admin).
    path("api/v1/", include("labeling.api.urls")),
    path("", include("labeling.urls")),
]

# Under /api/ every error is JSON; elsewhere Django's pages (labeling/api/errors.py).
handler400 = "labeling.api.errors.bad_request"
handler403 = "labeling.api.errors.permission_denied"
handler404 = "labeling.api.errors.page_not_found"
handler500 = "labeling.api.errors.server_error"
