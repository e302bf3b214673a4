"""An honest measure of the model: Bob is sometimes served a uniformly random item, the random
control; those items are the evaluation set each model version is scored on."""

from __future__ import annotations

import json
import random

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from labeling import queue
from labeling.models import Item, Project, QueueEntry
from labeling.queue import lease_next_item
from modeling.models import ModelVersion
from modeling.services.refresh import refresh_model
from tests.conftest import client_for, label, topic_of


def serve(project: Project, user: User, *, control: bool, monkeypatch: pytest.MonkeyPatch) -> Item:
    """Lease the next item with the random-control draw forced one way."""
    monkeypatch.setattr(queue, "_draw", lambda: 0.0 if control else 1.0)
    item = lease_next_item(project, user)
    assert item is not None
    return item


def label_some(
    project: Project, user: User, n: int, *, control: bool, monkeypatch: pytest.MonkeyPatch
) -> list[Item]:
    items = []
    for _ in range(n):
        item = serve(project, user, control=control, monkeypatch=monkeypatch)
        label(project, user, item, topic_of(item))
        items.append(item)
    return items


@pytest.mark.parametrize(("share", "flagged"), [(1.0, 24), (0.0, 0)])
def test_the_projects_share_of_served_items_are_random_controls(
    topics: Project, bob: User, monkeypatch: pytest.MonkeyPatch, share: float, flagged: int
) -> None:
    monkeypatch.setattr(queue, "_draw", random.random)
    topics.random_control_share = share
    topics.save()

    served = []
    while (item := lease_next_item(topics, bob)) is not None:
        served.append(item)
        label(topics, bob, item, topic_of(item))

    assert len(served) == 24
    assert sum(item.is_random_control for item in served) == flagged
    assert Item.objects.filter(project=topics, is_random_control=True).count() == flagged


def test_a_random_control_ignores_the_ranked_queue(
    topics: Project, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = list(topics.items.order_by("id"))
    for rank, item in enumerate(items[:3]):
        QueueEntry.objects.create(project=topics, item=item, rank=rank)
    Item.objects.filter(pk__in=[item.pk for item in items[:3]]).update(random_key=0.99)
    Item.objects.filter(pk=items[10].pk).update(random_key=0.0)

    control = serve(topics, bob, control=True, monkeypatch=monkeypatch)
    label(topics, bob, control, topic_of(control))
    ranked = serve(topics, bob, control=False, monkeypatch=monkeypatch)

    assert control == items[10]
    assert Item.objects.get(pk=control.pk).is_random_control is True
    assert ranked == items[0]
    assert Item.objects.get(pk=ranked.pk).is_random_control is False


def alternate_topics_in_serving_order(project: Project) -> None:
    """Items come out of the unranked pool in random_key order: make it sports, finance, ..."""
    by_topic: dict[str, list[Item]] = {}
    for item in project.items.order_by("id"):
        by_topic.setdefault(topic_of(item), []).append(item)
    for position, item in enumerate(
        item for pair in zip(*by_topic.values(), strict=False) for item in pair
    ):
        Item.objects.filter(pk=item.pk).update(random_key=position / 100)


def test_random_controls_are_trained_on_only_when_the_project_says_so(
    topics: Project, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Six labels that are all one topic cannot train a classifier; keep the story about controls.
    alternate_topics_in_serving_order(topics)
    label_some(topics, bob, 6, control=False, monkeypatch=monkeypatch)
    label_some(topics, bob, 4, control=True, monkeypatch=monkeypatch)

    held_out = refresh_model(topics.pk, run_id="run-1")
    topics.train_on_control = True
    topics.save()
    trained_on = refresh_model(topics.pk, run_id="run-2")

    assert held_out is not None
    assert held_out.labels_used == 6
    assert held_out.metrics["evaluation"] == {"n": 4, "note": "too few random-control labels yet"}
    assert trained_on is not None
    assert trained_on.labels_used == 10


def test_a_version_is_scored_on_the_random_controls(
    topics: Project, alice: User, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    label_some(topics, bob, 6, control=False, monkeypatch=monkeypatch)
    controls = label_some(topics, bob, 12, control=True, monkeypatch=monkeypatch)

    version = refresh_model(topics.pk, run_id="run-1")

    assert version is not None
    assert version.labels_used == 6
    evaluation = version.metrics["evaluation"]
    assert evaluation["n"] == 12
    low, high = evaluation["accuracy_ci"]
    assert 0 <= low <= evaluation["accuracy"] <= high <= 1
    low, high = evaluation["macro_f1_ci"]
    assert 0 <= low <= evaluation["macro_f1"] <= high <= 1
    sports = sum(topic_of(item) == "sports" for item in controls)
    assert {name: row["support"] for name, row in evaluation["per_class"].items()} == {
        "sports": sports,
        "finance": 12 - sports,
    }
    assert evaluation["confusion"]["labels"] == ["sports", "finance"]
    matrix = evaluation["confusion"]["matrix"]
    assert [sum(row) for row in matrix] == [sports, 12 - sports]
    assert evaluation["accuracy"] == pytest.approx((matrix[0][0] + matrix[1][1]) / 12)

    panel = client_for(alice).get(reverse("model_status", args=[topics.pk]))
    assert b"Evaluation accuracy" in panel.content
    assert b"n = 12" in panel.content
    assert ModelVersion.objects.filter(project=topics).count() == 1


def test_alice_exports_the_items_served_as_random_controls(
    topics: Project, alice: User, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    label_some(topics, bob, 3, control=False, monkeypatch=monkeypatch)
    controls = label_some(topics, bob, 2, control=True, monkeypatch=monkeypatch)

    response = client_for(alice).get(
        f"/api/v1/projects/{topics.pk}/export/", {"random_control": "1"}
    )

    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]  # type: ignore[attr-defined]
    assert [(row["id"], row["label"], row["random_control"]) for row in rows] == [
        (item.pk, topic_of(item), True) for item in sorted(controls, key=lambda item: item.pk)
    ]


def test_the_share_of_random_controls_is_a_fraction(topics: Project, alice: User) -> None:
    client = client_for(alice)
    url = f"/api/v1/projects/{topics.pk}/"

    refused = client.patch(url, {"random_control_share": 1.5}, content_type="application/json")
    accepted = client.patch(
        url,
        {"random_control_share": 0.25, "train_on_control": True},
        content_type="application/json",
    )

    assert refused.status_code == 400
    assert "random_control_share" in refused.json()
    assert accepted.status_code == 200
    topics.refresh_from_db()
    assert (topics.random_control_share, topics.train_on_control) == (0.25, True)


def test_a_multi_label_project_is_evaluated_on_whole_label_sets(topics: Project, bob: User) -> None:
    topics.multi_label = True
    topics.save()
    items = list(topics.items.order_by("id"))
    for index, item in enumerate(items):
        Item.objects.filter(pk=item.pk).update(is_random_control=bool(index % 2))
        label(topics, bob, item, topic_of(item))

    version = refresh_model(topics.pk, run_id="run-1")

    assert version is not None
    evaluation = version.metrics["evaluation"]
    assert evaluation["n"] == 12
    # Two clear topics: every control item gets exactly its one label back.
    assert evaluation["accuracy"] == 1.0
    assert evaluation["macro_f1"] == 1.0
    assert evaluation["micro_f1"] == 1.0
    assert evaluation["per_class"]["sports"] == {"precision": 1.0, "recall": 1.0, "support": 6}
    assert "confusion" not in evaluation
