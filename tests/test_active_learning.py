"""The model behind the queue: Alice's project is embedded, trained and re-ranked as Bob labels.

These stories call the worker's service in-process; tests/test_worker.py runs the same loop
through a real Celery worker.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from labeling.models import Project, QueueEntry
from labeling.queue import lease_next_item, suggestion_for
from modeling.models import EmbeddingChunk, ModelState, ModelVersion
from modeling.scheduling import request_retrain, retrain_if_due
from modeling.services.refresh import refresh_model
from tests.conftest import label, topic_of


def test_before_any_label_the_queue_holds_typical_items(topics: Project) -> None:
    assert refresh_model(topics.pk, run_id="run-1") is None

    assert EmbeddingChunk.objects.filter(project=topics).count() == 1
    queued = QueueEntry.objects.filter(project=topics).order_by("rank")
    assert queued.count() == 24
    first_two = {topic_of(entry.item) for entry in queued[:2]}
    assert first_two == {"sports", "finance"}
    state = ModelState.objects.get(project=topics)
    assert state.phase == "idle"
    assert state.queue_refreshed_at is not None


def test_labels_train_a_version_that_ranks_and_suggests(topics: Project, bob: User) -> None:
    for item in list(topics.items.order_by("id"))[::4]:
        label(topics, bob, item, topic_of(item))

    version = refresh_model(topics.pk, run_id="run-1")

    assert version is not None
    assert version.number == 1
    assert version.labels_used == 6
    assert version.class_counts == {"sports": 3, "finance": 3}
    next_item = lease_next_item(topics, bob)
    assert next_item is not None
    assert QueueEntry.objects.get(item=next_item).rank == 0
    suggestion = suggestion_for(next_item)
    assert suggestion is not None
    suggested, confidence = suggestion
    assert [label.name for label in suggested] == [topic_of(next_item)]
    assert 0.5 < confidence <= 1.0


def test_a_result_from_older_labels_never_replaces_a_newer_one(topics: Project, bob: User) -> None:
    for item in list(topics.items.order_by("id"))[::4]:
        label(topics, bob, item, topic_of(item))
    newer = ModelVersion.objects.create(
        project=topics,
        number=7,
        encoder="x",
        strategy="margin",
        labels_used=99,
        snapshot_at=timezone.now() + timedelta(minutes=1),
    )

    assert refresh_model(topics.pk, run_id="stale-run") is None

    assert topics.model_versions.first() == newer
    assert not QueueEntry.objects.filter(project=topics).exists()


def test_requests_during_a_run_merge_into_one_follow_up(topics: Project) -> None:
    ModelState.objects.create(project=topics, running_since=timezone.now(), run_id="busy")

    assert request_retrain(topics) is False
    assert request_retrain(topics) is False

    state = ModelState.objects.of(topics)
    assert state.follow_up is True
    assert state.queued_at is None
    # A second worker picking up another request leaves the running one alone.
    assert refresh_model(topics.pk, run_id="other") is None
    assert ModelState.objects.of(topics).run_id == "busy"


def test_a_retrain_is_requested_after_the_projects_answer_threshold(
    topics: Project, bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    topics.retrain_every = 3
    topics.save()
    items = list(topics.items.order_by("id"))
    for item in items[:2]:
        label(topics, bob, item, topic_of(item))
    assert retrain_if_due(topics) is False

    with django_capture_on_commit_callbacks(execute=True):
        label(topics, bob, items[2], topic_of(items[2]))

    assert ModelState.objects.of(topics).queued_at is not None


def test_answered_items_leave_the_ranked_pool(topics: Project, bob: User) -> None:
    for item in list(topics.items.order_by("id"))[::4]:
        label(topics, bob, item, topic_of(item))
    refresh_model(topics.pk, run_id="run-1")

    answered = set(topics.items.filter(answer_count__gt=0).values_list("id", flat=True))
    ranked = set(QueueEntry.objects.filter(project=topics).values_list("item_id", flat=True))
    assert ranked.isdisjoint(answered)
    assert len(ranked) == 18
