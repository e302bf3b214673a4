"""A retrain whose worker dies is taken over: heartbeats say which runs are alive, the sweep
sends lost ones again, and a duplicate of a finished run does nothing."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.utils import timezone

from labeling.models import Project
from modeling.models import QUEUED_PATIENCE, ModelState
from modeling.scheduling import request_retrain
from modeling.services.refresh import refresh_model
from tests.conftest import label, topic_of


def dead_run(project: Project, quiet_for: timedelta = timedelta(seconds=30)) -> ModelState:
    """A run whose worker stopped beating `quiet_for` ago, in the middle of training."""
    return ModelState.objects.create(
        project=project,
        phase="training",
        running_since=timezone.now() - quiet_for - timedelta(seconds=5),
        heartbeat_at=timezone.now() - quiet_for,
        run_id="dead-run",
    )


def test_a_run_whose_worker_went_quiet_no_longer_holds_the_project(topics: Project) -> None:
    dead_run(topics)

    assert not ModelState.objects.of(topics).is_running()
    assert request_retrain(topics) is True  # not merged into the dead run as a follow-up


def test_a_beating_run_keeps_the_project(topics: Project) -> None:
    dead_run(topics, quiet_for=timedelta(seconds=1))

    assert ModelState.objects.of(topics).is_running()
    assert request_retrain(topics) is False
    assert ModelState.objects.of(topics).follow_up is True


def test_the_sweep_sends_a_dead_run_again_under_its_own_id_once(topics: Project) -> None:
    dead_run(topics)
    now = timezone.now()

    assert ModelState.objects.take_lost_work(now) == [(topics.pk, "dead-run")]
    assert ModelState.objects.take_lost_work(now) == []  # another worker's sweep right after
    assert ModelState.objects.of(topics).recent_recovery() is not None


def test_the_sweep_sends_a_request_no_run_took_up_under_a_new_id(topics: Project) -> None:
    long_ago = timezone.now() - QUEUED_PATIENCE - timedelta(minutes=1)
    ModelState.objects.create(project=topics, queued_at=long_ago)

    [(project_id, task_id)] = ModelState.objects.take_lost_work(timezone.now() - QUEUED_PATIENCE)

    assert project_id == topics.pk
    assert task_id
    assert ModelState.objects.of(topics).queued_at > long_ago
    assert ModelState.objects.take_lost_work(timezone.now() - QUEUED_PATIENCE) == []


def test_the_resent_dead_run_takes_over_and_a_late_duplicate_does_nothing(
    topics: Project, bob: User
) -> None:
    for item in list(topics.items.order_by("pk"))[::3]:
        label(topics, bob, item, topic_of(item))
    dead_run(topics)

    version = refresh_model(topics.pk, run_id="dead-run")
    duplicate = refresh_model(topics.pk, run_id="dead-run")

    assert version is not None
    assert duplicate is None
    assert list(topics.model_versions.values_list("number", flat=True)) == [1]
    state = ModelState.objects.of(topics)
    assert (state.running_since, state.heartbeat_at, state.run_id) == (None, None, "")
