"""Rita (reviewer) settles what the answers leave open: disagreements and likely label errors.

Her ruling is the item's final label everywhere: in the next retrain, and in Alice's export.
Bob (annotator) may not rule; Charlie, an outsider, does not even see the project.
"""

from __future__ import annotations

import json

from django.contrib.auth.models import User

from labeling.models import Adjudication, Item, Project, Role, imported_annotator
from labeling.people import disagreements, likely_label_errors, recent_rulings
from labeling.services import resolve_labels, submit_answer
from modeling.core.classifiers import HEAD_C_CANDIDATES
from modeling.models import ModelVersion
from modeling.services.refresh import refresh_model
from modeling.services.training_data import training_set
from tests.conftest import client_for, label, make_project, serve, topic_of


def disputed_project(
    alice: User, bob: User, dora: User, rita: User, *, items: int = 4
) -> tuple[Project, Item]:
    """Alice's project where Bob says positive and Dora negative about the first item."""
    project = make_project(
        alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), (rita, Role.REVIEWER), items=items
    )
    item = project.items.order_by("pk").first()
    assert item is not None
    serve(project, bob, item)
    serve(project, dora, item)
    submit_answer(project, bob, item, resolve_labels(project, ["positive"]))
    submit_answer(project, dora, item, resolve_labels(project, ["negative"]))
    return project, item


def resolve_url(project: Project, item: Item) -> str:
    return f"/projects/{project.pk}/items/{item.pk}/resolve/"


def test_rita_resolves_a_disagreement_to_a_final_label(
    alice: User, bob: User, dora: User, rita: User
) -> None:
    project, item = disputed_project(alice, bob, dora, rita)
    assert [case.item_id for case in disagreements(project)] == [item.pk]
    page = client_for(rita).get(f"/projects/{project.pk}/people/")
    assert resolve_url(project, item).encode() in page.content

    negative = project.labels.get(name="negative")
    response = client_for(rita).post(
        resolve_url(project, item), {"labels": [negative.pk], "note": "sarcasm"}, follow=True
    )

    assert response.status_code == 200
    assert b"resolved" in response.content
    ruling = Adjudication.objects.get(item=item)
    assert [label.name for label in ruling.labels.all()] == ["negative"]
    assert (ruling.resolved_by, ruling.note) == (rita, "sarcasm")
    assert disagreements(project) == []
    [shown] = recent_rulings(project)
    assert (shown.item_id, shown.labels, shown.reviewer) == (item.pk, ["negative"], "rita")


def test_a_second_ruling_replaces_the_first(alice: User, bob: User, dora: User, rita: User) -> None:
    project, item = disputed_project(alice, bob, dora, rita)
    for name in ("negative", "positive"):
        chosen = project.labels.get(name=name)
        client_for(alice).post(resolve_url(project, item), {"labels": [chosen.pk]})

    ruling = Adjudication.objects.get(item=item)
    assert [label.name for label in ruling.labels.all()] == ["positive"]
    assert ruling.resolved_by == alice


def test_the_ruling_wins_in_the_export_and_in_training(
    alice: User, bob: User, dora: User, rita: User
) -> None:
    project, item = disputed_project(alice, bob, dora, rita)
    # Two people against one: the majority says positive.
    label(project, imported_annotator(), item, "positive")
    negative = project.labels.get(name="negative")
    client_for(rita).post(resolve_url(project, item), {"labels": [negative.pk]})

    response = client_for(alice).get(f"/api/v1/projects/{project.pk}/export/?format=jsonl")
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]  # type: ignore[attr-defined]
    [row] = [row for row in rows if row["id"] == item.pk]
    assert (row["label"], row["adjudicated"]) == ("negative", True)
    assert all(other["adjudicated"] is False for other in rows if other["id"] != item.pk)

    labels = list(project.labels.all())
    training = training_set(project, labels)
    index = training.item_ids.index(item.pk)
    assert labels[int(training.targets[index])].name == "negative"


def test_a_ruling_needs_exactly_one_label_in_a_single_label_project(
    alice: User, bob: User, dora: User, rita: User
) -> None:
    project, item = disputed_project(alice, bob, dora, rita)
    both = [label.pk for label in project.labels.filter(name__in=["positive", "negative"])]

    for chosen in ([], both):
        response = client_for(rita).post(
            resolve_url(project, item), {"labels": chosen}, follow=True
        )
        assert response.status_code == 200
        assert not Adjudication.objects.filter(item=item).exists()
    assert b"Choose exactly one label" in response.content


def test_bob_may_not_rule_and_charlie_sees_nothing(
    alice: User, bob: User, dora: User, rita: User, charlie: User
) -> None:
    project, item = disputed_project(alice, bob, dora, rita)
    positive = project.labels.get(name="positive")

    for user in (bob, charlie):
        response = client_for(user).post(resolve_url(project, item), {"labels": [positive.pk]})
        assert response.status_code == 404
    assert client_for(rita).get(resolve_url(project, item)).status_code == 405
    assert not Adjudication.objects.exists()


def test_a_label_or_item_of_another_project_is_refused(
    alice: User, bob: User, dora: User, rita: User
) -> None:
    project, item = disputed_project(alice, bob, dora, rita)
    other = make_project(alice, items=1, name="Other")
    foreign_label = other.labels.get(name="positive")
    foreign_item = other.items.get()

    response = client_for(rita).post(resolve_url(project, item), {"labels": [foreign_label.pk]})
    assert response.status_code == 302
    own = project.labels.get(name="positive")
    response = client_for(rita).post(resolve_url(project, foreign_item), {"labels": [own.pk]})
    assert response.status_code == 404
    assert not Adjudication.objects.exists()


def test_a_retrain_finds_the_label_that_contradicts_the_rest(topics: Project, bob: User) -> None:
    items = list(topics.items.order_by("pk"))
    wrong = items[0]
    assert topic_of(wrong) == "sports"
    label(topics, bob, wrong, "finance")
    for item in items[1:]:
        label(topics, bob, item, topic_of(item))

    version = refresh_model(topics.pk, run_id="run-1")

    assert version is not None
    assert "cv_accuracy" in version.metrics
    assert version.metrics["head_C"] in HEAD_C_CANDIDATES  # chosen on these labels
    suspects = likely_label_errors(topics, min_confidence=0.5)
    assert suspects, version.metrics.get("label_errors")
    first = suspects[0]
    assert (first.item_id, first.given, first.predicted) == (wrong.pk, ["finance"], ["sports"])

    # Once a reviewer has ruled, the item leaves the list.
    sports = topics.labels.get(name="sports")
    Adjudication.objects.create(item=wrong).labels.set([sports])
    assert wrong.pk not in [
        suspect.item_id for suspect in likely_label_errors(topics, min_confidence=0.5)
    ]
    assert ModelVersion.objects.filter(project=topics).count() == 1
