"""A script of Alice's, a lead, starts a fine-tune through the API and follows it to its version.

Bob annotates and can follow fine-tunes; Charlie is an outsider. The broker is recorded
(tests/conftest.py); the run itself is tests/test_finetune.py's business.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from config.celery import app as celery_app
from labeling.models import Project, Role
from modeling.models import FINETUNE_MODEL, FineTuneRun
from tests.conftest import RecordingBroker, make_project, token_client


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> RecordingBroker:
    recording = RecordingBroker()
    monkeypatch.setattr(celery_app, "send_task", recording.send_task)
    return recording


@pytest.fixture
def project(alice: User, bob: User) -> Project:
    return make_project(alice, (bob, Role.ANNOTATOR), items=5)


def runs_url(project: Project) -> str:
    return f"/api/v1/projects/{project.pk}/finetunes/"


def test_a_lead_starts_a_fine_tune_and_follows_it(
    project: Project,
    alice: User,
    broker: RecordingBroker,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    script = token_client(alice)

    with django_capture_on_commit_callbacks(execute=True):
        response = script.post(runs_url(project))

    assert response.status_code == 202
    started = response.json()
    assert started["status"] == "queued"
    assert started["requested_by"] == "alice"
    run = FineTuneRun.objects.get(project=project)
    assert broker.sent == [(FINETUNE_MODEL, (project.pk,))]
    FineTuneRun.objects.filter(pk=run.pk).update(status="running", step=5, total_steps=20)

    followed = script.get(f"{runs_url(project)}{run.pk}/").json()

    assert followed["status"] == "running"
    assert followed["progress_percent"] == 25.0
    assert [entry["id"] for entry in script.get(runs_url(project)).json()["results"]] == [run.pk]


def test_a_second_start_while_one_runs_says_which_one(
    project: Project, alice: User, broker: RecordingBroker
) -> None:
    script = token_client(alice)
    first = script.post(runs_url(project)).json()

    again = script.post(runs_url(project))

    assert again.status_code == 409
    assert again.json()["detail"] == "A fine-tune of this project is already under way."
    assert again.json()["run"]["id"] == first["id"]
    assert FineTuneRun.objects.filter(project=project).count() == 1


def test_a_lead_cancels_a_run_but_not_a_finished_one(
    project: Project, alice: User, broker: RecordingBroker
) -> None:
    script = token_client(alice)
    run_id = script.post(runs_url(project)).json()["id"]

    cancelled = script.post(f"{runs_url(project)}{run_id}/cancel/")

    assert cancelled.status_code == 202
    assert cancelled.json()["cancel_requested"] is True
    FineTuneRun.objects.filter(pk=run_id).update(status="cancelled")
    late = script.post(f"{runs_url(project)}{run_id}/cancel/")
    assert late.status_code == 409
    assert late.json()["detail"] == "This fine-tune is cancelled already."


def test_annotators_follow_fine_tunes_and_outsiders_see_nothing(
    project: Project, alice: User, bob: User, charlie: User, broker: RecordingBroker
) -> None:
    run_id = token_client(alice).post(runs_url(project)).json()["id"]

    assert token_client(bob).get(f"{runs_url(project)}{run_id}/").status_code == 200
    assert token_client(bob).post(runs_url(project)).status_code == 403
    assert token_client(bob).post(f"{runs_url(project)}{run_id}/cancel/").status_code == 403
    assert token_client(charlie).get(runs_url(project)).status_code == 404
    assert not FineTuneRun.objects.filter(cancel_requested=True).exists()


def test_a_run_the_project_started_by_itself_names_nobody(project: Project, alice: User) -> None:
    FineTuneRun.objects.create(project=project, task_id="auto-1")

    [run] = token_client(alice).get(runs_url(project)).json()["results"]

    assert run["requested_by"] is None
    assert run["labels_used"] == 0
    assert run["version"] is None


def test_a_lead_sets_when_the_project_fine_tunes_by_itself(project: Project, alice: User) -> None:
    script = token_client(alice)
    url = f"/api/v1/projects/{project.pk}/"
    assert script.get(url).json()["finetune_growth"] == 0.2

    changed = script.patch(
        url, {"finetune_growth": 0, "finetune_min_labels": 200}, "application/json"
    )
    refused = script.patch(url, {"finetune_growth": -1}, "application/json")

    assert changed.status_code == 200
    project.refresh_from_db()
    assert (project.finetune_growth, project.finetune_min_labels) == (0.0, 200)
    assert refused.status_code == 400
    assert "finetune_growth" in refused.json()
