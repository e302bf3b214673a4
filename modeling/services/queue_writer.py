"""Writing the ranked queue that annotators are served from, behind the version guard."""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
import numpy.typing as npt
from django.db import transaction
from django.utils import timezone

from labeling.models import Label, Lease, Project, QueueEntry
from modeling.models import ModelState, ModelVersion
from modeling.promotion import announce_promotion

log = logging.getLogger(__name__)


def write_head_version(
    project: Project,
    ids: npt.NDArray[np.int64],
    order: npt.NDArray[np.intp],
    probabilities: dict[int, npt.NDArray[np.floating]] | None,
    version_fields: dict[str, object] | None,
    labels: list[Label],
    snapshot_at: datetime,
) -> ModelVersion | None:
    """Store the head version (None: no model yet) and replace the ranked queue by its order,
    unless a version from newer labels exists already (the version guard)."""
    with transaction.atomic():
        state = ModelState.objects.locked(project)
        latest = project.model_versions.first()
        if latest is not None and latest.snapshot_at > snapshot_at:
            log.info("Discarding a result for project %s from older labels", project.pk)
            return None
        version = None
        if version_fields is not None:
            version = ModelVersion.objects.create(
                project=project,
                number=(latest.number + 1) if latest else 1,
                snapshot_at=snapshot_at,
                **version_fields,
            )
            announce_promotion(version)
        replace_queue(
            project, state, ids, order, probabilities, version.number if version else 0, labels
        )
    return version


def replace_queue(
    project: Project,
    state: ModelState,
    ids: npt.NDArray[np.int64],
    order: npt.NDArray[np.intp],
    probabilities: dict[int, npt.NDArray[np.floating]] | None,
    version_number: int,
    labels: list[Label],
) -> None:
    """Write the ranked queue in `order`, scored by `version_number`; `state` must be locked."""
    entries = []
    for rank, row in enumerate(order.tolist()):
        suggested: list[int] = []
        confidence = None
        if probabilities is not None and row in probabilities:
            suggested, confidence = _suggestion(probabilities[row], labels, project.multi_label)
        entries.append(
            QueueEntry(
                project=project,
                item_id=int(ids[row]),
                rank=rank,
                score=float(len(order) - rank),
                model_version=version_number,
                suggested_labels=suggested,
                confidence=confidence,
            )
        )
    QueueEntry.objects.filter(project=project).delete()
    QueueEntry.objects.bulk_create(entries, batch_size=1000)
    Lease.objects.filter(project=project, expires_at__lte=timezone.now()).delete()
    state.queue_refreshed_at = timezone.now()
    state.save(update_fields=["queue_refreshed_at", "updated_at"])


def _suggestion(
    probabilities: npt.NDArray[np.floating], labels: list[Label], multi_label: bool
) -> tuple[list[int], float]:
    if multi_label:
        chosen = [labels[i].pk for i, p in enumerate(probabilities) if p >= 0.5]
        certainty = float(np.min(np.maximum(probabilities, 1 - probabilities)))
        return chosen, certainty
    best = int(np.argmax(probabilities))
    return [labels[best].pk], float(probabilities[best])
