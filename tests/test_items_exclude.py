"""Alice takes off-topic items out of labeling from the items page and puts them back later:
Bob is never served an excluded item, its answers stop training the model, and it stays in
the project and its exports with its answers.

Her "Topics" project has 12 sports and 12 finance texts; she excludes the finance ones.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from labeling.models import Item, Project, QueueEntry, Role
from labeling.queue import lease_next_item
from modeling.services.training_data import training_set
from tests.conftest import client_for, label, make_topics_project, serve, topic_of


@pytest.fixture
def topics(alice: User, bob: User) -> Project:
    return make_topics_project(alice, (bob, Role.ANNOTATOR))


def exclude_url(project: Project) -> str:
    return f"/projects/{project.pk}/items/bulk/exclude/"


def served_to(project: Project, user: User) -> list[Item]:
    served = []
    while (item := lease_next_item(project, user)) is not None:
        served.append(item)
        label(project, user, item, topic_of(item))
    return served


def test_excluded_items_are_never_served_nor_trained_on_and_come_back_when_included(
    topics: Project, alice: User, bob: User
) -> None:
    finance = list(topics.items.filter(text__contains="Shares of").order_by("pk"))
    serve(topics, bob, finance[0])
    label(topics, bob, finance[0], "finance")  # answered before the exclusion
    QueueEntry.objects.create(project=topics, item=finance[1], rank=0)
    client = client_for(alice)
    form = {"q": "shares", "scope": "all"}

    asked = client.post(exclude_url(topics), form)
    assert b"Take 12 items out of labeling?" in asked.content
    done = client.post(exclude_url(topics), {**form, "confirm": "1"}, follow=True)

    assert b"12 items now out of labeling" in done.content
    assert not QueueEntry.objects.filter(item=finance[1]).exists()
    trained = training_set(topics, list(topics.labels.order_by("position")))
    assert trained.class_counts == {"sports": 0, "finance": 0}
    assert {topic_of(item) for item in served_to(topics, bob)} == {"sports"}
    excluded = client.get(f"/projects/{topics.pk}/items/", {"state": "excluded"})
    assert len(excluded.context["rows"]) == 12
    assert topics.items.count() == 24  # still in the project

    client.post(
        exclude_url(topics), {"state": "excluded", "scope": "all", "include": "1", "confirm": "1"}
    )

    assert not topics.items.filter(excluded=True).exists()
    assert len(served_to(topics, bob)) == 11  # the finance items Bob had not answered
    trained = training_set(topics, list(topics.labels.order_by("position")))
    assert trained.class_counts == {"sports": 12, "finance": 12}


def test_only_leads_exclude(topics: Project, bob: User) -> None:
    item = topics.items.first()
    assert item is not None
    response = client_for(bob).post(
        exclude_url(topics), {"scope": "selected", "item": [str(item.pk)], "confirm": "1"}
    )

    assert response.status_code == 404
    assert not topics.items.filter(excluded=True).exists()
