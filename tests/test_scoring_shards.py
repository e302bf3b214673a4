"""A promoted fine-tune scores a large pool in shards, and the queue changes only once all are in.

Alice leads, Bob has answered 40 of 60 items. Shards of 15 items make four tasks for the
fine-tuning queue (recorded here; each runs in this process on a tiny BERT, tests/fixtures.py).
A shard whose worker dies, or whose message the broker loses, is sent again by the sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from labeling.models import Item, Project, QueueEntry, Role
from modeling.models import SHARD_SENDS, ModelVersion, ScoringShard
from modeling.services import finetune as finetune_service
from modeling.services import rescoring
from modeling.services.embeddings import SPACE_KEY
from tests.conftest import RecordingBroker, label, make_topics_project, topic_of
from tests.fixtures import tiny_bert


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny-encoder-shards"))


@pytest.fixture
def sharded(
    settings: Any, small_fine_tunes: Any, recorded_broker: RecordingBroker
) -> RecordingBroker:
    settings.SIFT_SCORING_SHARD_ITEMS = 15
    return recorded_broker


def fine_tuned(
    alice: User, bob: User, encoder: Path, capture_on_commit: Callable[..., Any]
) -> tuple[Project, ModelVersion]:
    """Bob answered 40 of 60 items; a fine-tune on them is promoted and sends its shards."""
    project = make_topics_project(alice, (bob, Role.ANNOTATOR), per_topic=30, encoder=str(encoder))
    items = list(project.items.order_by("pk"))
    for item in items[:20] + items[30:50]:
        label(project, bob, item, topic_of(item))
    with capture_on_commit(execute=True):
        version = finetune_service.finetune(project.pk, "task-1")
    assert version is not None
    return project, version


def test_the_queue_is_written_once_when_the_last_shard_is_scored(
    alice: User,
    bob: User,
    tiny_encoder: Path,
    sharded: RecordingBroker,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    project, version = fine_tuned(alice, bob, tiny_encoder, django_capture_on_commit_callbacks)

    assert version.promoted
    shard_tasks = [args for name, args in sharded.sent if name == rescoring.SCORE_SHARD]
    assert shard_tasks == [(project.pk, version.number, index) for index in range(4)]
    assert ScoringShard.objects.filter(project=project).count() == 4
    ranked_by_it = QueueEntry.objects.filter(project=project, model_version=version.number)
    assert not ranked_by_it.exists()

    for index in range(3):
        rescoring.score_shard(project.pk, version.number, index)
        # Three of four shards in: annotators still get the queue as it was.
        assert not ranked_by_it.exists()
    rescoring.score_shard(project.pk, version.number, 1)  # a redelivered shard: no harm

    rescoring.score_shard(project.pk, version.number, 3)

    unanswered = set(
        Item.objects.filter(project=project, answer_count=0).values_list("pk", flat=True)
    )
    assert set(ranked_by_it.values_list("item_id", flat=True)) == unanswered  # all 20, once
    assert not ScoringShard.objects.filter(project=project).exists()
    version.refresh_from_db()
    assert SPACE_KEY in version.metrics  # every item has a vector in its adapted space
    assert version.pool_size == 20

    rescoring.score_shard(project.pk, version.number, 3)  # late redelivery after the write
    assert ranked_by_it.count() == 20


def test_a_shard_whose_worker_died_or_whose_message_was_lost_is_sent_again_by_the_sweep(
    alice: User,
    bob: User,
    tiny_encoder: Path,
    sharded: RecordingBroker,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    project, version = fine_tuned(alice, bob, tiny_encoder, django_capture_on_commit_callbacks)
    shards = ScoringShard.objects.filter(project=project, version_number=version.number)
    assert [shard.sends for shard in shards.order_by("index")] == [1, 1, 1, 1]

    def resent() -> list[int]:
        sharded.sent.clear()
        rescoring.resend_lost_shards()
        return [args[2] for name, args in sharded.sent if name == rescoring.SCORE_SHARD]

    # Shard 0 is scored; shard 1's worker was killed half-way: it last beat 30 s ago, and it
    # was sent 3 minutes ago. Shards 2 and 3 wait their turn in the broker.
    rescoring.score_shard(project.pk, version.number, 0)
    ago = timezone.now() - timedelta(minutes=3)
    shards.filter(index=1).update(heartbeat_at=timezone.now() - timedelta(seconds=30))
    shards.filter(index__gt=0).update(sent_at=ago)
    assert resent() == [1]
    assert resent() == []  # sweeping again at once (every worker sweeps) sends nothing more

    # Nothing moved for six minutes: the broker lost 2 and 3 (a Redis restarted empty).
    long_ago = timezone.now() - timedelta(minutes=6)
    shards.update(sent_at=long_ago, heartbeat_at=long_ago)
    shards.filter(index=0).update(finished_at=long_ago)
    shards.filter(index__gt=1).update(heartbeat_at=None)
    assert sorted(resent()) == [1, 2, 3]
    for index in (1, 2, 3):
        rescoring.score_shard(project.pk, version.number, index)  # the resent tasks run
    ranked_by_it = QueueEntry.objects.filter(project=project, model_version=version.number)
    assert ranked_by_it.count() == 20
    assert not shards.exists()
    assert resent() == []


def test_a_shard_that_fails_every_time_is_sent_a_few_times_then_left_to_the_logs(
    alice: User,
    bob: User,
    tiny_encoder: Path,
    sharded: RecordingBroker,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    project, version = fine_tuned(alice, bob, tiny_encoder, django_capture_on_commit_callbacks)
    shards = ScoringShard.objects.filter(project=project, version_number=version.number)
    sends = 0
    for _ in range(10):
        long_ago = timezone.now() - timedelta(minutes=10)
        shards.update(sent_at=long_ago, heartbeat_at=long_ago)  # it died again
        sharded.sent.clear()
        rescoring.resend_lost_shards()
        sends += sum(1 for name, args in sharded.sent if args[2] == 0)
    assert sends == SHARD_SENDS - 1  # the first send, then three more
    assert set(shards.values_list("sends", flat=True)) == {SHARD_SENDS}
