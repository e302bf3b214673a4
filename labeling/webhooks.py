"""Webhooks: once a transaction commits, enqueue one signed delivery per subscribed URL.

Delivery itself runs in a worker (labeling/webhook_delivery.py).
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from django.db import transaction

from config.celery import enqueue
from labeling.models import Project, Webhook

DELIVER_WEBHOOK = "labeling.tasks.deliver_webhook"


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
    # Like a retrain request, a dead broker must not fail the request that caused the event.
    enqueue(
        DELIVER_WEBHOOK,
        webhook_id,
        event,
        payload,
        delivery_id,
        on_broker_down=lambda exc: Webhook.objects.filter(pk=webhook_id).update(
            last_status=f"Not sent: the task broker could not be reached ({exc})"[:200]
        ),
    )
