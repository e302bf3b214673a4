"""Logging in: Django's page with a limit on failed attempts."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse

from labeling.ratelimit import client_ip, login_limit, too_many_requests, wait_in_words


class LoginView(auth_views.LoginView):
    """Django's log-in page; an address that keeps failing for one username gets a 429."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = login_limit().retry_after(self._attempt_key())
        if wait is None:
            return super().post(request, *args, **kwargs)
        form = self.form_class(request, initial={"username": request.POST.get("username", "")})
        context = self.get_context_data(form=form, retry_in=wait_in_words(wait))
        return too_many_requests(self.render_to_response(context), wait)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        login_limit().hit(self._attempt_key())
        return super().form_invalid(form)

    def _attempt_key(self) -> str:
        username = self.request.POST.get("username", "").strip().lower()
        return f"{client_ip(self.request)} {username}"
