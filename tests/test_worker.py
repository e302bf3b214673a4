"""Through a real Celery worker process and the real broker: labeling reorders the queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from labeling.models import QueueEntry, Role
from labeling.queue import lease_next_item
from modeling.models import ModelVersion
from tests.conftest import label, make_topics_project, make_user, topic_of
from tests.worker import running_worker, wait_for


@pytest.mark.django_db(transaction=True)
def test_ten_answers_make_the_worker_retrain_and_reorder_the_queue(tmp_path: Path) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    project = make_topics_project(alice, (bob, Role.ANNOTATOR), per_topic=15)

    with running_worker(tmp_path / "worker.log"):
        for _ in range(10):
            item = lease_next_item(project, bob)
            assert item is not None
            label(project, bob, item, topic_of(item))
        wait_for(
            lambda: ModelVersion.objects.filter(project=project).exists(),
            timeout=180,
            what="the first model version",
        )

    version = ModelVersion.objects.get(project=project)
    assert version.labels_used == 10
    ranked = QueueEntry.objects.filter(project=project, model_version=version.number)
    assert ranked.count() == 20
    first = ranked.order_by("rank").first()
    assert first is not None
    assert lease_next_item(project, bob) == first.item
