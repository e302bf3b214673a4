"""The broker goes down while Bob and Dora label, and a worker machine dies mid-retrain: labeling
goes on, the retrain that was asked for happens, and nothing is lost or half-done.

Real processes throughout: gunicorn, Celery workers, PostgreSQL, and a redis-server of the
test's own (never the machine's shared one) that the story kills and starts again.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import requests
from django.contrib.auth.models import User
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from labeling.models import Annotation, ApiToken, Item, Project, QueueEntry, Role, content_hash
from modeling.core.encoders import DEFAULT_ENCODER_NAME
from modeling.models import EmbeddingChunk, ModelState, ModelVersion, Phase
from modeling.scheduling import request_retrain
from tests.conftest import (
    client_for,
    make_project,
    make_topics_project,
    make_user,
    topic_of,
)
from tests.servers import http_session, kill_with_children, running_gunicorn, running_redis
from tests.worker import env_for_processes, running_worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# Seconds before Redis hands the task of a dead worker to the next one.
VISIBILITY_TIMEOUT = 2
WORKER_ENV = {"SIFT_BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}


@pytest.fixture(autouse=True)
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("production runs its workers on PostgreSQL")


def state_of(project: Project) -> ModelState:
    return ModelState.objects.get(project=project)


def is_idle(project: Project) -> bool:
    state = state_of(project)
    return state.running_since is None and state.queued_at is None and not state.follow_up


# --- The broker goes away -------------------------------------------------------------------


class Annotator:
    """Bob or Dora with an API token, labeling each item by its topic."""

    def __init__(self, base_url: str, project: Project, username: str) -> None:
        user = make_user(username)
        project.add_member(user, Role.ANNOTATOR)
        _, key = ApiToken.issue(user, "labeling script")
        self.session = http_session()
        self.session.headers["Authorization"] = f"Token {key}"
        self.api = f"{base_url}/api/v1/projects/{project.pk}"

    def label(self, answers: int) -> list[float]:
        """Answer `answers` items; returns the seconds each next + answer took."""
        took = []
        for _ in range(answers):
            started = time.monotonic()
            served = self.session.get(f"{self.api}/queue/next/", timeout=30)
            assert served.status_code == 200, served.text
            item = Item.objects.get(pk=served.json()["item"]["id"])
            answer = {"item": item.pk, "labels": [topic_of(item)]}
            stored = self.session.post(f"{self.api}/annotations/", json=answer, timeout=30)
            assert stored.status_code == 201, stored.text
            took.append(time.monotonic() - started)
        return took


def test_labeling_goes_on_without_the_broker_and_the_retrain_asked_for_meanwhile_happens(
    tmp_path: Path,
) -> None:
    alice = make_user("alice")
    # Without random controls every answer is a training label: labels_used counts them all.
    project = make_topics_project(alice, per_topic=30, retrain_every=5, random_control_share=0.0)
    store_embeddings(
        project, [int(topic_of(item) == "finance") for item in project.items.order_by("pk")]
    )

    with (
        running_redis(tmp_path / "redis.log") as redis,
        running_worker(tmp_path / "worker.log", extra_env={"REDIS_URL": redis.url}),
        running_gunicorn(env_for_processes(REDIS_URL=redis.url), tmp_path / "gunicorn.log") as web,
    ):
        bob, dora = Annotator(web, project, "bob"), Annotator(web, project, "dora")
        bob.label(5)
        dora.label(5)
        # The burst's retrains may each have read fewer than all ten answers, leaving fewer
        # than `retrain_every` behind; Alice asks for one more, as "Retrain now" does.
        wait_for(lambda: project.model_versions.exists() and is_idle(project), 180, "a model")
        _, key = ApiToken.issue(alice, "lead script")
        asked = http_session().post(
            f"{web}/api/v1/projects/{project.pk}/training/",
            headers={"Authorization": f"Token {key}"},
            timeout=30,
        )
        assert asked.status_code == 202, asked.text
        wait_for(
            lambda: project.model_versions.filter(labels_used=10).exists() and is_idle(project),
            180,
            "a model of the first ten answers",
        )

        redis.kill()
        assert requests.get(f"{web}/health/broker/", timeout=10).status_code == 503
        took = bob.label(5) + dora.label(5)

        # Every answer was taken, none waited long on the dead broker, and the request for a
        # retrain is remembered rather than lost.
        assert Annotation.objects.filter(item__project=project).count() == 20
        assert max(took) < 10
        state = state_of(project)
        assert state.queued_at is not None
        assert "broker could not be reached" in state.last_error

        redis.start()  # empty: whatever the broker held is gone
        # Nobody answers any more; the worker reconnects and the retrain happens on its own.
        wait_for(
            lambda: project.model_versions.filter(labels_used=20).exists() and is_idle(project),
            120,
            "a model of all twenty answers",
        )

    assert Annotation.objects.filter(item__project=project).count() == 20
    latest = project.model_versions.first()
    assert latest is not None
    assert set(
        QueueEntry.objects.filter(project=project).values_list("model_version", flat=True)
    ) == {latest.number}


# --- A worker dies in the middle of a retrain -----------------------------------------------


def store_embeddings(project: Project, classes: list[int]) -> None:
    """Stored embeddings for the project's items, one cluster per class, as the worker would
    write them: the retrain then never loads the encoder."""
    ids = list(Item.objects.filter(project=project).order_by("pk").values_list("pk", flat=True))
    rng = np.random.default_rng(0)
    centroids = rng.standard_normal((max(classes) + 1, 384))
    vectors = centroids[classes] + 0.8 * rng.standard_normal((len(ids), 384))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    EmbeddingChunk.objects.bulk_create(
        [
            EmbeddingChunk.pack(
                project,
                DEFAULT_ENCODER_NAME,
                ids[start : start + 512],
                vectors[start : start + 512],
            )
            for start in range(0, len(ids), 512)
        ],
        batch_size=16,
    )


def seed_large_project(items: int = 12_000, labeled: int = 4_000) -> Project:
    """A project big enough that training and scoring each take a moment, its embeddings
    stored and a few thousand items answered by Bob."""
    alice, bob = make_user("alice"), make_user("bob")
    project = make_project(alice, (bob, Role.ANNOTATOR), name="Large", retrain_every=10**6)
    labels = list(project.labels.all())
    rng = np.random.default_rng(0)
    classes = rng.integers(0, len(labels), items).tolist()
    texts = [f"Item {n} about {labels[c].name} things" for n, c in enumerate(classes)]
    created = Item.objects.bulk_create(
        [Item(project=project, text=text, content_hash=content_hash(text)) for text in texts],
        batch_size=5000,
    )
    store_embeddings(project, classes)
    rows = rng.choice(items, size=labeled, replace=False).tolist()
    answers = Annotation.objects.bulk_create(
        [Annotation(item=created[row], annotator=bob, seconds_spent=2.0) for row in rows]
    )
    through = Annotation.labels.through
    through.objects.bulk_create(
        [
            through(annotation_id=answer.pk, label_id=labels[classes[row]].pk)
            for answer, row in zip(answers, rows, strict=True)
        ]
    )
    Item.objects.filter(pk__in=[created[row].pk for row in rows]).update(answer_count=1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE labeling_item, labeling_annotation, labeling_annotation_labels")
    return project


@pytest.fixture
def large_project() -> Project:
    return seed_large_project()


def phase_is(project: Project, phase: str) -> bool:
    return bool(state_of(project).phase == phase)


def unacknowledged_long_enough(project: Project) -> bool:
    """The dead worker's task has been out longer than the visibility timeout."""
    started = state_of(project).running_since
    margin = timedelta(seconds=VISIBILITY_TIMEOUT + 1)
    return started is not None and timezone.now() - started > margin


def queue_versions(project: Project) -> set[int]:
    return set(QueueEntry.objects.filter(project=project).values_list("model_version", flat=True))


def test_a_retrain_killed_in_training_and_again_in_scoring_is_redone_once(
    large_project: Project, tmp_path: Path
) -> None:
    project = large_project
    answers = Annotation.objects.filter(item__project=project).count()

    with running_worker(tmp_path / "first.log", extra_env=WORKER_ENV) as first:
        request_retrain(project)
        wait_for(lambda: project.model_versions.exists() and is_idle(project), 180, "version 1")
        queued = QueueEntry.objects.filter(project=project).count()
        assert queue_versions(project) == {1}

        request_retrain(project)
        wait_for(
            lambda: phase_is(project, Phase.TRAINING), 120, "the second run to train", poll=0.05
        )
        kill_with_children(first)
    killed = state_of(project)
    assert killed.phase == Phase.TRAINING
    assert killed.running_since is not None
    run_id = killed.run_id

    wait_for(lambda: unacknowledged_long_enough(project), 30, "the visibility timeout", poll=0.05)
    with running_worker(tmp_path / "second.log", extra_env=WORKER_ENV, purge=False) as second:
        wait_for(
            lambda: phase_is(project, Phase.SCORING), 120, "the redelivered run to score", poll=0.05
        )
        kill_with_children(second)
    killed = state_of(project)
    # The same task came back (same run id), and dying again left the queue as it was.
    assert killed.run_id == run_id
    assert killed.phase == Phase.SCORING
    assert list(ModelVersion.objects.filter(project=project).values_list("number", flat=True)) == [
        1
    ]
    assert queue_versions(project) == {1}
    assert QueueEntry.objects.filter(project=project).count() == queued

    wait_for(lambda: unacknowledged_long_enough(project), 30, "the visibility timeout", poll=0.05)
    with running_worker(tmp_path / "third.log", extra_env=WORKER_ENV, purge=False):
        wait_for(
            lambda: project.model_versions.filter(number=2).exists() and is_idle(project),
            180,
            "the redelivered run to finish",
        )

    assert list(ModelVersion.objects.filter(project=project).values_list("number", flat=True)) == [
        2,
        1,
    ]
    assert queue_versions(project) == {2}
    state = state_of(project)
    assert state.phase == Phase.IDLE
    assert (state.running_since, state.run_id, state.last_error) == (None, "", "")
    assert Annotation.objects.filter(item__project=project).count() == answers


def test_a_retrain_whose_worker_dies_while_redis_restarts_empty_is_taken_over_within_a_minute(
    large_project: Project, tmp_path: Path
) -> None:
    project = large_project
    alice = User.objects.get(username="alice")
    _, key = ApiToken.issue(alice, "retrain script")

    with (
        running_redis(tmp_path / "redis.log") as redis,
        running_gunicorn(env_for_processes(REDIS_URL=redis.url), tmp_path / "gunicorn.log") as web,
    ):
        worker_env = {**WORKER_ENV, "REDIS_URL": redis.url}
        with running_worker(tmp_path / "first.log", extra_env=worker_env, purge=False) as first:
            asked = http_session().post(
                f"{web}/api/v1/projects/{project.pk}/training/",
                headers={"Authorization": f"Token {key}"},
                timeout=30,
            )
            assert asked.status_code == 202, asked.text
            wait_for(lambda: phase_is(project, Phase.TRAINING), 120, "the retrain to train")
            kill_with_children(first)
        redis.kill()
        redis.start()  # empty: the dead worker's unacknowledged task is gone with it

        started = time.monotonic()
        with running_worker(tmp_path / "second.log", extra_env=worker_env, purge=False):
            wait_for(
                lambda: project.model_versions.exists() and is_idle(project),
                60,
                "another worker to take the retrain over",
            )
        took_over_after = time.monotonic() - started

    assert took_over_after < 60
    assert list(project.model_versions.values_list("number", flat=True)) == [1]
    state = state_of(project)
    assert state.recovered_at is not None
    assert (state.running_since, state.last_error) == (None, "")
    panel = client_for(alice).get(reverse("model_status", args=[project.pk]))
    assert b'data-recovered="true"' in panel.content
