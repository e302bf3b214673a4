"""Alice's project fine-tunes its transformer by itself as Bob's labels grow.

The project's setting says when: here at least 10 new labels and 50% more than the last
fine-tune had. Retrains (in this process, on a tiny BERT: tests/fixtures.py) ask for a fine-tune
when one is due; one runs at a time, and what arrives while it trains makes the next one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django import db
from django.contrib.auth.models import User
from django.utils import timezone

from labeling.models import Project, Role
from modeling.core.cadence import FINETUNE_GROWTH, FINETUNE_MIN_LABELS, finetune_due
from modeling.models import FINETUNE_MODEL, FineTuneRun
from modeling.services import finetune as finetune_service
from modeling.services.refresh import refresh_model
from tests.conftest import RecordingBroker, client_for, label, make_topics_project, topic_of
from tests.fixtures import tiny_bert


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny-encoder-auto"))


@pytest.fixture
def auto_finetunes(
    settings: Any, small_fine_tunes: Any, recorded_broker: RecordingBroker
) -> RecordingBroker:
    settings.SIFT_AUTO_FINETUNE = True
    return recorded_broker


def growing_project(alice: User, bob: User, encoder: Path) -> Project:
    return make_topics_project(
        alice,
        (bob, Role.ANNOTATOR),
        per_topic=20,
        encoder=str(encoder),
        finetune_min_labels=10,
        finetune_growth=0.5,
    )


def bob_labels(project: Project, bob: User, count: int) -> None:
    unlabeled = project.items.filter(answer_count=0).order_by("pk")
    items = list(unlabeled.filter(text__contains="match")[: count // 2]) + list(
        unlabeled.exclude(text__contains="match")[: count - count // 2]
    )
    for item in items:
        label(project, bob, item, topic_of(item))


def finetunes_sent(broker: RecordingBroker) -> list[tuple[Any, ...]]:
    return [args for name, args in broker.sent if name == FINETUNE_MODEL]


def test_the_first_fine_tune_waits_for_enough_labels_then_starts_by_itself(
    alice: User,
    bob: User,
    tiny_encoder: Path,
    auto_finetunes: RecordingBroker,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    project = growing_project(alice, bob, tiny_encoder)
    bob_labels(project, bob, 8)
    with django_capture_on_commit_callbacks(execute=True):
        refresh_model(project.pk, run_id="retrain-1")
    assert not FineTuneRun.objects.filter(project=project).exists()

    bob_labels(project, bob, 2)
    with django_capture_on_commit_callbacks(execute=True):
        refresh_model(project.pk, run_id="retrain-2")

    [run] = FineTuneRun.objects.filter(project=project)
    assert run.status == FineTuneRun.Status.QUEUED
    assert run.requested_by is None  # the project asked, not a person
    assert finetunes_sent(auto_finetunes) == [(project.pk,)]

    # More retrains while it waits for a worker do not queue a second one.
    bob_labels(project, bob, 10)
    with django_capture_on_commit_callbacks(execute=True):
        refresh_model(project.pk, run_id="retrain-3")
    assert FineTuneRun.objects.filter(project=project).count() == 1
    assert len(finetunes_sent(auto_finetunes)) == 1


def test_labels_that_arrive_during_a_fine_tune_make_the_next_one(
    alice: User,
    bob: User,
    tiny_encoder: Path,
    auto_finetunes: RecordingBroker,
    django_capture_on_commit_callbacks: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    transactional_db: None,
) -> None:
    project = growing_project(alice, bob, tiny_encoder)
    bob_labels(project, bob, 10)
    with django_capture_on_commit_callbacks(execute=True):
        refresh_model(project.pk, run_id="retrain-1")
    [first] = FineTuneRun.objects.filter(project=project)
    # The worker's run stops at its first progress report until Bob has labeled more.
    training, bob_done = threading.Event(), threading.Event()
    report = finetune_service._progress

    def held_progress(run: FineTuneRun, done: int, total: int) -> None:
        training.set()
        bob_done.wait(timeout=60)
        report(run, done, total)

    monkeypatch.setattr(finetune_service, "_progress", held_progress)

    def work() -> None:
        try:
            finetune_service.finetune(project.pk, first.task_id)
        finally:
            db.connection.close()  # this thread's own connection

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert training.wait(timeout=60)
        bob_labels(project, bob, 10)
        refresh_model(project.pk, run_id="retrain-2")  # finds the fine-tune running: no second
        assert FineTuneRun.objects.filter(project=project).count() == 1
    finally:
        bob_done.set()
        worker.join(timeout=120)

    first.refresh_from_db()
    assert first.status == FineTuneRun.Status.DONE
    assert len(first.item_ids) == 10  # it learned from the labels it started with
    second = FineTuneRun.objects.filter(project=project).exclude(pk=first.pk).get()
    assert second.status == FineTuneRun.Status.QUEUED


def test_a_lead_can_turn_automatic_fine_tuning_off(
    alice: User,
    bob: User,
    tiny_encoder: Path,
    auto_finetunes: RecordingBroker,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    project = growing_project(alice, bob, tiny_encoder)
    Project.objects.filter(pk=project.pk).update(finetune_growth=0.0)
    bob_labels(project, bob, 20)

    with django_capture_on_commit_callbacks(execute=True):
        refresh_model(project.pk, run_id="retrain-1")

    assert not FineTuneRun.objects.filter(project=project).exists()
    assert finetunes_sent(auto_finetunes) == []


@pytest.mark.parametrize(
    ("labels", "last", "due"),
    [
        (49, 0, False),
        (50, 0, True),
        (100, 50, True),  # 100% more
        (99, 50, False),  # 49 more: not 50
        (300, 260, False),  # 50 more would do, but it is only 15% more
        (312, 260, True),  # 20% and 52 more
    ],
)
def test_the_default_rule_is_20_percent_more_labels_and_at_least_50(
    labels: int, last: int, due: bool
) -> None:
    defaults = Project()
    assert (defaults.finetune_growth, defaults.finetune_min_labels) == (
        FINETUNE_GROWTH,
        FINETUNE_MIN_LABELS,
    )  # simulate replays the projects' default
    assert finetune_due(labels, last, defaults.finetune_growth, defaults.finetune_min_labels) is due


def test_the_lead_sees_when_the_project_fine_tunes_next(
    alice: User, bob: User, tiny_encoder: Path, settings: Any
) -> None:
    settings.SIFT_AUTO_FINETUNE = True
    project = growing_project(alice, bob, tiny_encoder)
    page = client_for(alice).get(f"/projects/{project.pk}/").content.decode()
    assert "Fine-tunes by itself at 10 labels." in page

    FineTuneRun.objects.create(
        project=project, task_id="done-1", status="done", snapshot_at=timezone.now(),
        item_ids=list(range(30)),
    )  # fmt: skip
    page = client_for(alice).get(f"/projects/{project.pk}/").content.decode()
    assert "Fine-tunes by itself at 45 labels." in page  # 50% more than 30, and 10 more

    Project.objects.filter(pk=project.pk).update(finetune_growth=0)
    page = client_for(alice).get(f"/projects/{project.pk}/").content.decode()
    assert "Fine-tunes only when asked (see Settings)." in page
