"""Request-wide concerns: a lost database, a big body, private pages and idle sessions."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# An active session is saved again, moving its expiry on, at most this often.
SESSION_REFRESH_SECONDS = 300
SESSION_SAVED_AT = "sift_saved_at"
# Seconds since the epoch; tests replace it to step past a refresh.
_clock: Callable[[], float] = time.time


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


class NoStoreMiddleware:
    """Pages of a logged-in user and every API answer carry `Cache-Control: no-store`.

    Neither the browser nor a proxy then keeps a copy of items, labels or exports for the next
    person at the machine. Logged in means carrying a session cookie: asking for the user could
    read the database, and a 503 for a lost database must stay a 503. A view that set its own
    Cache-Control keeps it; static files are public and stay cacheable.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.has_header("Cache-Control") or request.path.startswith(settings.STATIC_URL):
            return response
        if request.path.startswith("/api/") or settings.SESSION_COOKIE_NAME in request.COOKIES:
            response["Cache-Control"] = "no-store"
        return response


class SessionRefreshMiddleware:
    """A session ends SESSION_COOKIE_AGE after its last request, give or take five minutes.

    Django moves a session's expiry on whenever it saves it. Saving on every request
    (SESSION_SAVE_EVERY_REQUEST) would write to the database on every click and poll; here a
    request saves the session only when SESSION_REFRESH_SECONDS have passed since its last
    save (stamped at log-in), so an idle session expires and an active one lives on.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        session = request.session
        if not session.accessed or session.is_empty() or response.status_code >= 500:
            return response
        now = int(_clock())
        saved_at = session.get(SESSION_SAVED_AT)
        # A session saved anyway (a log-in) takes its first stamp; others wait for it.
        due = session.modified if saved_at is None else now - saved_at >= SESSION_REFRESH_SECONDS
        if due:
            session[SESSION_SAVED_AT] = now
        return response
