"""Clear answers for requests the views cannot serve: a lost database, a body over the limit."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class DatabaseUnavailableMiddleware:
    """A lost or refused database connection is a 503 to retry shortly, not a 500.

    API callers get JSON, people a short page; neither sees the error itself. The connection
    is replaced on the next request (CONN_HEALTH_CHECKS).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        log.error(
            "Database unavailable during %s %s", request.method, request.path, exc_info=exception
        )
        response: HttpResponse
        if request.path.startswith("/api/"):
            response = JsonResponse(
                {"detail": "The database is unavailable; try again in a few seconds."},
                status=503,
            )
        else:
            # Rendered without the request: its context processors would query the database.
            response = HttpResponse(render_to_string("503.html"), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


class RequestTooLargeMiddleware:
    """A body over DATA_UPLOAD_MAX_MEMORY_SIZE is a 413 that names the limit, not a bare 400."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, RequestDataTooBig):
            return None
        limit_mb = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)
        message = (
            f"The request is larger than {limit_mb} MB. Send big imports as JSONL "
            "(Content-Type: application/x-ndjson) or as a file on the Import page."
        )
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": message}, status=413)
        return HttpResponse(message, content_type="text/plain; charset=utf-8", status=413)
