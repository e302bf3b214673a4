"""Alice, a lead, fine-tunes her project's transformer and sees what each version cost.

Bob annotates. The service runs in this process on a tiny BERT (tests/fixtures.py); the
story through a real worker that is killed half-way is tests/test_finetune_worker.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from django.contrib.auth.models import User
from django.utils import timezone

from labeling.models import Item, Project, QueueEntry, Role
from modeling.models import EmbeddingChunk, FineTuneRun, ModelVersion
from modeling.promotion import mark_forced, promotion_decision
from modeling.scheduling import request_finetune
from modeling.services import finetune as finetune_service
from modeling.services import rescoring
from modeling.services.embeddings import load_embeddings
from modeling.services.refresh import refresh_model
from tests.conftest import client_for, label, make_project, make_topics_project, topic_of
from tests.fixtures import tiny_bert


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture
def fine_tuning(settings: Any, tmp_path: Path) -> Any:
    settings.SIFT_CHECKPOINT_DIR = tmp_path / "checkpoints"
    settings.SIFT_TRAINING_DEVICE = "cpu"
    settings.SIFT_FINETUNE_EPOCHS = 5
    settings.SIFT_FINETUNE_MAX_LENGTH = 48
    settings.SIFT_FINETUNE_BATCH_SIZE = 4
    settings.SIFT_PRICE_PER_DEVICE_HOUR = 3.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/modeling/test_finetuning.py
    yield settings
    torch.set_num_threads(threads)


def labeled_topics(alice: User, bob: User, encoder: Path) -> Project:
    """40 of 60 items answered by Bob; 10 of those are random-control items."""
    project = make_topics_project(alice, (bob, Role.ANNOTATOR), per_topic=30, encoder=str(encoder))
    items = list(project.items.order_by("pk"))
    answered = items[:20] + items[30:50]
    Item.objects.filter(pk__in=[item.pk for item in answered[::4]]).update(is_random_control=True)
    for item in answered:
        label(project, bob, item, topic_of(item))
    return project


def test_a_lead_fine_tunes_and_sees_the_version_with_its_cost(
    alice: User,
    bob: User,
    tiny_encoder: Path,
    fine_tuning: Any,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    project = labeled_topics(alice, bob, tiny_encoder)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        response = client_for(alice).post(f"/projects/{project.pk}/model/finetune/")
    assert response.status_code == 302
    assert len(sent) == 1  # the task, sent once the request's transaction commits
    run = FineTuneRun.objects.get(project=project)
    assert run.status == FineTuneRun.Status.QUEUED

    version = finetune_service.finetune(project.pk, run.task_id)

    assert version is not None
    version.refresh_from_db()
    assert version.kind == "finetune"
    assert version.labels_used == 30  # the 10 random-control items are the evaluation set
    assert version.promoted  # no earlier version to compare with
    assert version.metrics["evaluation"]["n"] == 10
    assert 0.0 <= version.metrics["evaluation"]["accuracy"] <= 1.0
    assert "macro_f1" in version.metrics["evaluation"]
    assert version.metrics["training"]["epochs_run"] >= 1
    assert version.device == "cpu"
    assert version.samples_per_second > 0
    assert version.peak_memory_bytes > 0
    assert version.energy_wh > 0
    assert version.energy_source == "stated"
    assert version.cost == pytest.approx(
        3.0 * (version.train_seconds + version.score_seconds) / 3600
    )
    run.refresh_from_db()
    assert run.status == FineTuneRun.Status.DONE
    assert run.version == version
    # The pool (the 20 unanswered items) is ranked by the fine-tuned model's scores.
    queue = QueueEntry.objects.filter(project=project)
    assert queue.count() == 20
    assert set(queue.values_list("model_version", flat=True)) == {version.number}

    page = client_for(alice).get(f"/projects/{project.pk}/").content.decode()
    assert f'data-version="{version.number}"' in page
    assert "promoted" in page
    assert f"ranked by v{version.number}" in page
    assert 'data-stale="true"' not in page
    report = client_for(alice).get(f"/projects/{project.pk}/model/report/").content.decode()
    assert f"v{version.number}" in report
    assert "finetune" in report


def test_a_redelivered_task_of_a_finished_run_does_nothing(
    alice: User, bob: User, tiny_encoder: Path, fine_tuning: Any
) -> None:
    project = labeled_topics(alice, bob, tiny_encoder)
    first = finetune_service.finetune(project.pk, "task-1")

    again = finetune_service.finetune(project.pk, "task-1")

    assert first is not None
    assert again is None
    assert ModelVersion.objects.filter(project=project).count() == 1


def test_a_version_worse_than_the_serving_one_is_held_back() -> None:
    serving = ModelVersion(number=3, metrics={"evaluation": {"accuracy": 0.9}})

    worse = promotion_decision({"accuracy": 0.85}, serving)
    equal = promotion_decision({"accuracy": 0.9}, serving)
    unevaluated = promotion_decision({"n": 4, "note": "too few"}, serving)
    first = promotion_decision({"accuracy": 0.5}, None)

    assert worse["promoted"] is False
    assert worse["baseline_version"] == 3
    assert equal["promoted"] is True
    assert unevaluated["promoted"] is True
    assert first["promoted"] is True


def _version(project: Project, number: int, **fields: Any) -> ModelVersion:
    return ModelVersion.objects.create(
        project=project,
        number=number,
        encoder="tiny",
        strategy="density_diverse",
        labels_used=30,
        snapshot_at=timezone.now(),
        **fields,
    )


def test_the_lead_can_promote_a_held_back_version_anyway(
    alice: User,
    bob: User,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), items=5)
    _version(project, 1, metrics={"evaluation": {"accuracy": 0.9}})
    held = _version(
        project,
        2,
        kind="finetune",
        promoted=False,
        metrics={"promotion": {"promoted": False, "reason": "worse than the serving version"}},
    )
    page = client_for(alice).get(f"/projects/{project.pk}/").content.decode()
    assert "Promote anyway" in page
    assert "worse than the serving version" in page

    promote = f"/projects/{project.pk}/model/versions/2/promote/"
    assert client_for(bob).post(promote).status_code == 404
    with django_capture_on_commit_callbacks(execute=False) as sent:
        response = client_for(alice).post(promote)

    assert response.status_code == 302
    held.refresh_from_db()
    assert held.promoted
    assert held.metrics["promotion"]["forced"] is True
    assert len(sent) == 1  # the re-scoring of the pool with v2


def test_scores_from_an_older_version_show_as_stale_until_replaced(alice: User, bob: User) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), items=3)
    _version(project, 1)
    for rank, item in enumerate(project.items.all()):
        QueueEntry.objects.create(project=project, item=item, rank=rank, model_version=1)
    _version(project, 2, kind="finetune", promoted=True)

    page = client_for(alice).get(f"/projects/{project.pk}/").content.decode()
    assert 'data-stale="true"' in page
    assert "v2 is re-scoring the pool" in page

    QueueEntry.objects.filter(project=project).update(model_version=2)
    page = client_for(alice).get(f"/projects/{project.pk}/").content.decode()
    assert 'data-stale="true"' not in page


def test_only_leads_can_start_a_fine_tune(alice: User, bob: User, charlie: User) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), items=3)

    assert client_for(bob).post(f"/projects/{project.pk}/model/finetune/").status_code == 404
    assert client_for(charlie).post(f"/projects/{project.pk}/model/finetune/").status_code == 404
    assert client_for(alice).get(f"/projects/{project.pk}/model/finetune/").status_code == 405
    assert not FineTuneRun.objects.filter(project=project).exists()


def test_a_second_request_while_one_is_queued_adds_nothing(
    alice: User, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    project = make_project(alice, items=3)
    with django_capture_on_commit_callbacks(execute=False):
        first = request_finetune(project, alice)
        second = request_finetune(project, alice)

    assert first is not None
    assert second is None
    assert FineTuneRun.objects.filter(project=project).count() == 1


def test_after_a_promoted_fine_tune_the_head_works_in_its_adapted_space(
    alice: User, bob: User, tiny_encoder: Path, fine_tuning: Any
) -> None:
    project = labeled_topics(alice, bob, tiny_encoder)
    base = EmbeddingChunk.objects.filter(project=project)
    refresh_model(project.pk, run_id="retrain-1")  # the head, on the encoder as it came
    base_ids, base_vectors = load_embeddings(project, str(tiny_encoder))

    first = finetune_service.finetune(project.pk, "task-1")

    assert first is not None
    assert first.promoted
    adapted = f"{tiny_encoder}+finetune-v{first.number}"
    adapted_ids, adapted_vectors = load_embeddings(project, adapted)
    assert sorted(adapted_ids.tolist()) == sorted(base_ids.tolist())  # every item, once
    assert not np.allclose(
        adapted_vectors[np.argsort(adapted_ids)], base_vectors[np.argsort(base_ids)]
    )
    bob_answers_more(project, bob, 4)
    head = refresh_model(project.pk, run_id="retrain-2")
    assert head is not None
    assert head.encoder == adapted  # the version says which space its figures are about
    page = client_for(alice).get(f"/projects/{project.pk}/").content.decode()
    assert f"on the encoder fine-tuned in v{first.number}" in page

    second = finetune_service.finetune(project.pk, "task-2")  # warm-started from the first
    assert second is not None
    if not second.promoted:  # held back by its evaluation: Alice promotes it anyway
        mark_forced(second)
        rescoring.rescore_pool(project.pk, second.number)

    newer = f"{tiny_encoder}+finetune-v{second.number}"
    # The first version's copy of every vector is gone; the encoder as it came stays.
    assert set(base.values_list("encoder", flat=True)) == {str(tiny_encoder), newer}
    latest_head = refresh_model(project.pk, run_id="retrain-3")
    assert latest_head is not None
    assert latest_head.encoder == newer


def bob_answers_more(project: Project, bob: User, count: int) -> None:
    for item in list(project.items.filter(answer_count=0).order_by("pk"))[:count]:
        label(project, bob, item, topic_of(item))
