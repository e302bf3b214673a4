"""The API tokens page: create one (shown once), list and revoke them."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.forms import modelform_factory
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from labeling.access import AuthedRequest
from labeling.models import ApiToken
from labeling.ratelimit import token_creation_limit, too_many_requests, wait_in_words

ApiTokenForm = modelform_factory(ApiToken, fields=["name"])


@login_required
@never_cache
def api_tokens(request: AuthedRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST or None)
    new_key = None
    wait = None
    if request.method == "POST" and form.is_valid():
        wait = token_creation_limit().attempt(str(request.user.pk))
        if wait is None:
            _, new_key = ApiToken.issue(request.user, form.cleaned_data["name"])
            form = ApiTokenForm()
        else:
            form.add_error(
                None, f"You created many tokens just now; try again in {wait_in_words(wait)}."
            )
    context = {"form": form, "new_key": new_key, "tokens": request.user.api_tokens.all()}
    status = 422 if form.errors else 200
    response = render(request, "labeling/tokens.html", context, status=status)
    return response if wait is None else too_many_requests(response, wait)


@login_required
@require_POST
def revoke_api_token(request: AuthedRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    token.revoke()
    messages.success(request, f"Token {token.prefix}… revoked; requests that use it now fail.")
    return redirect("api_tokens")
