"""`Authorization: Token <key>` with per-user keys stored as hashes."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from labeling.models import ApiToken
from labeling.ratelimit import bad_token_limit, client_ip


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Send the header as 'Authorization: Token <key>'."
            )
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        token = ApiToken.find_active(key)
        if token is None:
            # A script looping on a bad token is told to back off; valid tokens are unaffected.
            wait = bad_token_limit().attempt(client_ip(request))
            if wait is not None:
                raise exceptions.Throttled(
                    wait, "Too many requests with an invalid or revoked token from your address."
                )
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        # Write at most once a minute, not on every request.
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Any) -> str:
        return self.keyword


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Shows token authentication in the OpenAPI schema and the docs page."""

    target_class = "labeling.api.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "Send `Authorization: Token <key>`; keys come from /account/tokens/.",
        }
