"""Bob sees the model's suggestion only where it is usually right: from the confidence at
which the newest version's suggestions were right 4 times in 5 on the evaluation items, or
from the threshold Alice sets. Below it the page says the model is unsure, and where it is
shown the suggested button is marked.

Alice's "Topics" project has 24 items; the queue ranks a sure item (90%) before an unsure one
(60%), both suggesting sports.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from labeling.models import Item, Project, QueueEntry, Role
from modeling.models import ModelVersion
from tests.conftest import client_for, make_topics_project


@pytest.fixture
def topics(alice: User, bob: User) -> Project:
    project = make_topics_project(alice, (bob, Role.ANNOTATOR))
    sports = project.labels.get(name="sports")
    sure, unsure = project.items.order_by("id")[:2]
    for rank, (item, confidence) in enumerate([(sure, 0.9), (unsure, 0.6)]):
        QueueEntry.objects.create(
            project=project,
            item=item,
            rank=rank,
            suggested_labels=[sports.pk],
            confidence=confidence,
        )
    return project


def measured(project: Project, suggest_above: float | None) -> None:
    ModelVersion.objects.create(
        project=project,
        number=1,
        encoder="test",
        strategy="margin",
        labels_used=20,
        snapshot_at=timezone.now(),
        metrics={"evaluation": {"n": 30, "suggest_above": suggest_above}},
    )


def label_page(user: User, project: Project) -> str:
    return client_for(user).get(f"/projects/{project.pk}/label/").content.decode()


def answer_shown(user: User, project: Project, page: str) -> None:
    item = re.search(r'name="item" value="(\d+)"', page)
    assert item
    sports = project.labels.get(name="sports")
    client_for(user).post(
        f"/projects/{project.pk}/label/answer/", {"item": item.group(1), "labels": [sports.pk]}
    )


def suggested_buttons(page: str) -> list[str]:
    return re.findall(
        r'class="label-button[^"]*suggested[^"]*"[^>]*>\s*(?:<kbd>\w</kbd>)?\s*(\w+)', page
    )


def test_a_sure_suggestion_is_shown_and_marked_an_unsure_one_is_not(
    topics: Project, bob: User
) -> None:
    measured(topics, 0.8)

    sure = label_page(bob, topics)
    assert "Model suggests <strong>sports</strong> · 90% sure" in sure
    assert suggested_buttons(sure) == ["sports"]
    answer_shown(bob, topics, sure)

    unsure = label_page(bob, topics)
    assert "The model is unsure about this one" in unsure
    assert "Model suggests" not in unsure
    assert suggested_buttons(unsure) == []


def test_until_a_version_has_measured_it_the_model_is_unsure(topics: Project, bob: User) -> None:
    measured(topics, None)  # too few evaluation items were right often enough

    page = label_page(bob, topics)

    assert "The model is unsure about this one" in page
    assert suggested_buttons(page) == []


def test_alice_sets_her_own_threshold_in_the_settings(
    topics: Project, alice: User, bob: User
) -> None:
    measured(topics, 0.95)
    topics.suggest_above = 50
    topics.save()

    sure = label_page(bob, topics)
    answer_shown(bob, topics, sure)
    unsure = label_page(bob, topics)

    assert "90% sure" in sure
    assert "Model suggests <strong>sports</strong> · 60% sure" in unsure


def test_the_api_says_whether_the_page_shows_the_suggestion(topics: Project, bob: User) -> None:
    measured(topics, 0.8)

    served = client_for(bob).get(f"/api/v1/projects/{topics.pk}/queue/next/").json()

    assert served["suggestion"] == {"labels": ["sports"], "confidence": 0.9, "shown": True}
    assert Item.objects.filter(pk=served["item"]["id"]).exists()
