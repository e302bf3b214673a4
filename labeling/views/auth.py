"""Logging in and changing one's password: Django's pages, with limits on wrong passwords."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse

from labeling.ratelimit import LoginAttempt, first_refusal, password_change_limit, too_many_requests


class LoginView(auth_views.LoginView):
    """Django's log-in page; an address that keeps failing gets a 429 before any password check.

    The only page that checks passwords for a session: the admin's log-in redirects here.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.attempt = LoginAttempt.of(request)
        blocked = self.attempt.start()
        if blocked is None:
            return super().post(request, *args, **kwargs)
        form = self.form_class(request, initial={"username": request.POST.get("username", "")})
        context = self.get_context_data(form=form, blocked=blocked)
        return too_many_requests(self.render_to_response(context), blocked.seconds)

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        self.attempt.succeeded()
        return super().form_valid(form)


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's page, where the current password is checked: wrong ones are counted per account,
    and over the limit the page answers 429 before checking another."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.limit = password_change_limit()
        self.key = str(request.user.pk)
        blocked = first_refusal([(self.limit, self.limit.attempt(self.key))])
        if blocked is None:
            return super().post(request, *args, **kwargs)
        # The page needs a logged-in user (Django's view is login_required), so no anonymous one.
        form = self.form_class(cast(User, request.user))
        context = self.get_context_data(form=form, blocked=blocked)
        return too_many_requests(self.render_to_response(context), blocked.seconds)

    def form_valid(self, form: PasswordChangeForm) -> HttpResponse:
        self.limit.refund(self.key)
        return super().form_valid(form)

    def form_invalid(self, form: PasswordChangeForm) -> HttpResponse:
        if "old_password" not in form.errors:
            self.limit.refund(self.key)  # the right password, a new one too weak: no guess
        return super().form_invalid(form)
