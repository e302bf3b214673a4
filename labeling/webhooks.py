"""Webhooks: sign a JSON body, POST it to each subscribed URL from a worker, record the outcome."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import urllib.error
import urllib.request
import uuid
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from labeling.models import Project, Webhook

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5


class DeliveryFailed(Exception):
    """The receiver could not be reached or answered with a server error; worth retrying."""


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def sign(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the body with the webhook's secret, in hex."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def fire(project: Project, event: str, payload: dict[str, Any]) -> int:
    """Once the current transaction commits, enqueue one delivery per active webhook of the
    project that subscribes to the event; returns how many."""
    # Filtered in Python: JSONField `contains` lookups do not work on SQLite.
    hooks = [hook.pk for hook in project.webhooks.filter(active=True) if event in hook.events]
    for webhook_id in hooks:
        delivery_id = str(uuid.uuid4())
        transaction.on_commit(partial(_enqueue, webhook_id, event, payload, delivery_id))
    return len(hooks)


def _enqueue(webhook_id: int, event: str, payload: dict[str, Any], delivery_id: str) -> None:
    from modeling.tasks import deliver_webhook

    try:
        deliver_webhook.delay(webhook_id, event, payload, delivery_id)
    except (BrokerError, OSError) as exc:
        # Like a retrain request, a dead broker must not fail the request that caused the event.
        log.warning("Could not enqueue webhook %s (%s): %s", webhook_id, event, exc)
        Webhook.objects.filter(pk=webhook_id).update(
            last_status=f"Not sent: the task broker could not be reached ({exc})"[:200]
        )


def deliver(
    webhook_id: int, event: str, payload: dict[str, Any], delivery_id: str | None = None
) -> int | None:
    """POST the payload, signed, to the webhook; returns the receiver's HTTP status.

    Returns None when the webhook was deleted or deactivated meanwhile. Raises DeliveryFailed
    on network errors and 5xx answers, after recording them, so the task can retry with the
    same delivery id (receivers use it to drop duplicates).
    """
    webhook = Webhook.objects.filter(pk=webhook_id, active=True).first()
    if webhook is None:
        return None
    body = json.dumps(payload, sort_keys=True, default=str).encode("utf-8")
    request = urllib.request.Request(
        webhook.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Sift-Webhooks/1",
            "X-Sift-Event": event,
            "X-Sift-Signature": f"sha256={sign(webhook.secret, body)}",
            "X-Sift-Delivery": delivery_id or str(uuid.uuid4()),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            code: int = response.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        _record(webhook, f"Failed: {reason}")
        raise DeliveryFailed(f"{webhook.url}: {reason}") from exc
    _record(webhook, f"HTTP {code}")
    if code >= 500:
        raise DeliveryFailed(f"{webhook.url} answered HTTP {code}")
    return code


def _record(webhook: Webhook, outcome: str) -> None:
    Webhook.objects.filter(pk=webhook.pk).update(
        last_status=outcome[:200], last_delivery_at=timezone.now()
    )
