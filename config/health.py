"""Health endpoints for load balancers and monitors: unauthenticated, cheap, JSON."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from kombu.exceptions import OperationalError

from config.celery import app


def _unhealthy(error: Exception) -> JsonResponse:
    # The class names the failure without leaking hosts or credentials from the message.
    return JsonResponse({"status": "error", "error": type(error).__name__}, status=503)


@never_cache
def alive(request: HttpRequest) -> JsonResponse:
    """The web process answers; touches neither the database nor the broker."""
    return JsonResponse({"status": "ok"})


@never_cache
def database(request: HttpRequest) -> JsonResponse:
    """The database answers a `SELECT 1`."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        return _unhealthy(error)
    return JsonResponse({"status": "ok"})


@never_cache
def broker(request: HttpRequest) -> JsonResponse:
    """The Celery broker accepts a connection within two seconds."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except (OperationalError, OSError) as error:
        return _unhealthy(error)
    return JsonResponse({"status": "ok"})


@never_cache
def worker(request: HttpRequest) -> JsonResponse:
    """At least one Celery worker answers a ping within a second."""
    try:
        replies = app.control.ping(timeout=1)
    except (OperationalError, OSError) as error:
        return _unhealthy(error)
    workers = sorted(name for reply in replies for name in reply)
    if not workers:
        return JsonResponse({"status": "error", "error": "no worker answered"}, status=503)
    return JsonResponse({"status": "ok", "workers": workers})
