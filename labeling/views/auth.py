"""Logging in: Django's page with a limit on failed attempts."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse

from labeling.ratelimit import LoginAttempt, too_many_requests, wait_in_words


class LoginView(auth_views.LoginView):
    """Django's log-in page; an address that keeps failing gets a 429 before any password check.

    The only page that checks passwords for a session: the admin's log-in redirects here.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.attempt = LoginAttempt.of(request)
        wait = self.attempt.start()
        if wait is None:
            return super().post(request, *args, **kwargs)
        form = self.form_class(request, initial={"username": request.POST.get("username", "")})
        context = self.get_context_data(form=form, retry_in=wait_in_words(wait))
        return too_many_requests(self.render_to_response(context), wait)

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        self.attempt.succeeded()
        return super().form_valid(form)
