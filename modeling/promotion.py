"""Promotion of model versions: the rule, a lead's override, and the announcement to webhooks.

Shared by the web side (a lead's "Promote anyway") and the workers (a new version); no torch.
"""

from __future__ import annotations

from django.db.models import QuerySet

from labeling.models import Webhook
from labeling.webhooks import fire
from modeling.metrics import Evaluation, Promotion
from modeling.models import ModelVersion


def promotion_decision(evaluation: Evaluation, serving: ModelVersion | None) -> Promotion:
    """Promote unless the serving version's evaluation accuracy is higher than this one's."""
    accuracy = evaluation.get("accuracy")
    baseline = serving.stored_metrics().get("evaluation", {}).get("accuracy") if serving else None
    decision = Promotion(
        accuracy=accuracy,
        baseline_version=serving.number if serving else None,
        baseline_accuracy=baseline,
    )
    if not isinstance(baseline, float):
        return {**decision, "promoted": True, "reason": "no evaluated version to compare with"}
    if not isinstance(accuracy, float):
        return {**decision, "promoted": True, "reason": "too few random-control labels to compare"}
    promoted = accuracy >= baseline
    reason = "not worse than the serving version" if promoted else "worse than the serving version"
    return {**decision, "promoted": promoted, "reason": reason}


def mark_forced(version: ModelVersion) -> bool:
    """Promote a held-back version on a lead's word; False when it was promoted already."""
    held_back: QuerySet[ModelVersion] = ModelVersion.objects.filter(pk=version.pk, promoted=False)
    if not held_back.update(promoted=True):
        return False
    version.refresh_from_db()
    metrics = version.stored_metrics()
    metrics["promotion"] = {**metrics.get("promotion", {}), "forced": True, "promoted": True}
    ModelVersion.objects.filter(pk=version.pk).update(metrics=metrics)
    version.metrics = metrics
    return True


def announce_promotion(version: ModelVersion) -> None:
    """Tell the project's webhooks that a version now ranks the queue."""
    fire(
        version.project,
        Webhook.Event.MODEL_PROMOTED,
        {
            "project": version.project_id,
            "version": version.number,
            "labels_used": version.labels_used,
            # The stop set's predictions are bookkeeping, not news for a receiver.
            "metrics": {k: v for k, v in version.metrics.items() if k != "stop_set"},
        },
    )
