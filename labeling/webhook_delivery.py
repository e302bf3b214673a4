"""Webhook delivery, in a worker: sign a JSON body, POST it to the URL, record the outcome."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import urllib.error
import urllib.request
import uuid
from typing import Any

from django.utils import timezone

from labeling.models import Webhook

TIMEOUT_SECONDS = 5


class DeliveryFailed(Exception):
    """The receiver could not be reached or answered with a server error; worth retrying."""


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def sign(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the body with the webhook's secret, in hex."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


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
