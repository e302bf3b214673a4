"""Every error under /api/ is JSON with a clear message, even one raised before DRF or by a bug.

DRF answers its own exceptions as JSON; these cover the rest: a body Django refuses before a
view runs (too large, a bad host), an unknown URL, and an unexpected error (a 500, logged).
The site's other pages keep Django's HTML pages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from labeling.parsers import MAX_JSON_DEPTH, json_depth

API_PREFIX = "/api/"


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser, refusing nesting deeper than MAX_JSON_DEPTH with a 400 (deeper
    values overflowed Python's stack further on: a 500)."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            data = None
            too_deep = True
        else:
            too_deep = json_depth(data) > MAX_JSON_DEPTH
        if too_deep:
            raise ParseError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep.")
        return data


def _json_under_api(
    status: int, message: str, html: Callable[..., HttpResponse]
) -> Callable[..., HttpResponse]:
    def view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            return JsonResponse({"detail": message}, status=status)
        return html(request, exception) if exception is not None else html(request)

    return view


bad_request = _json_under_api(
    400, "The request could not be read (too large, or malformed).", defaults.bad_request
)
permission_denied = _json_under_api(
    403, "You do not have permission to do this.", defaults.permission_denied
)
page_not_found = _json_under_api(404, "Not found.", defaults.page_not_found)
server_error = _json_under_api(
    500,
    "Sift hit an unexpected error; it was logged for the administrators.",
    defaults.server_error,
)
