"""The model panel on Alice's project page polls only while work is in progress."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.urls import reverse

from labeling.models import Project
from modeling.models import ModelState
from modeling.scheduling import request_finetune
from modeling.services.refresh import refresh_model
from tests.conftest import client_for, label, topic_of


def poll(user: User, project: Project) -> tuple[int, str]:
    response = client_for(user).get(
        reverse("model_status", args=[project.pk]), HTTP_HX_REQUEST="true"
    )
    return response.status_code, response.content.decode()


def test_an_idle_panel_stops_polling(alice: User, topics: Project) -> None:
    status, html = poll(alice, topics)

    assert status == 286
    assert 'data-watching="false"' in html
    assert "every 2s" not in html


def test_retrain_now_starts_polling_until_the_worker_is_done(
    alice: User, bob: User, topics: Project
) -> None:
    for item in list(topics.items.order_by("pk"))[::3]:  # sports and finance alike
        label(topics, bob, item, topic_of(item))
    pressed = client_for(alice).post(reverse("retrain", args=[topics.pk]), HTTP_HX_REQUEST="true")

    assert pressed.status_code == 200
    assert "every 2s" in pressed.content.decode()
    assert poll(alice, topics)[0] == 200  # queued: still watching

    refresh_model(topics.pk, run_id="run-1")  # the worker's run, done
    ModelState.objects.filter(project=topics).update(queued_at=None)

    status, html = poll(alice, topics)
    assert status == 286
    assert "v1" in html


def test_a_fine_tune_in_progress_keeps_the_panel_polling(alice: User, topics: Project) -> None:
    request_finetune(topics, alice)

    status, html = poll(alice, topics)

    assert status == 200
    assert "every 2s" in html
