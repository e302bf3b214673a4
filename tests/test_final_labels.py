"""One final-label rule: Bob and Dora disagree, and every part of Sift agrees on the outcome."""

from __future__ import annotations

from django.contrib.auth.models import User

from labeling.models import Item, Project, Role
from labeling.services import adjudicate, resolve_labels
from modeling.services.training_data import evaluation_set, training_set
from tests.conftest import add_items, client_for, label, make_project
from tests.test_export import export_url, jsonl_rows


def exported_labels(lead: User, project: Project) -> dict[int, str | None]:
    response = client_for(lead).get(export_url(project))
    assert response.status_code == 200
    rows = jsonl_rows(response)
    return {row["id"]: row["label"] for row in rows}


def trained_labels(project: Project) -> dict[int, str]:
    labels = list(project.labels.all())
    training = training_set(project, labels)
    return {
        item_id: labels[int(target)].name
        for item_id, target in zip(training.item_ids, training.targets, strict=True)
    }


def test_the_model_trains_on_exactly_the_label_the_export_gives(
    alice: User, bob: User, dora: User
) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), overlap=2)
    items = add_items(project, [f"a review to argue about {i}" for i in range(6)])
    # On every item Bob and Dora disagree; who answered last alternates.
    for i, item in enumerate(items):
        first, second = (bob, dora) if i % 2 == 0 else (dora, bob)
        label(project, first, item, "positive")
        label(project, second, item, "negative" if i % 3 else "neutral")

    exported = exported_labels(alice, project)
    trained = trained_labels(project)

    assert trained == {item.pk: exported[item.pk] for item in items}
    # A tie goes to the label answered last.
    assert trained[items[0].pk] == "neutral"
    assert trained[items[1].pk] == "negative"


def test_a_changed_answer_counts_as_the_latest(alice: User, bob: User, dora: User) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), overlap=2)
    [item] = add_items(project, ["the service was fine, I suppose"])
    label(project, bob, item, "positive")
    label(project, dora, item, "negative")
    label(project, bob, item, "neutral")  # Bob changes his mind after Dora answered

    assert trained_labels(project)[item.pk] == "neutral"
    assert exported_labels(alice, project)[item.pk] == "neutral"


def test_a_ruling_decides_for_training_evaluation_and_export(
    alice: User, bob: User, dora: User, rita: User
) -> None:
    project = make_project(
        alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), (rita, Role.REVIEWER), overlap=2
    )
    plain, control = add_items(project, ["plain item", "control item"])
    Item.objects.filter(pk=control.pk).update(is_random_control=True)
    for item in (plain, control):
        label(project, bob, item, "positive")
        label(project, dora, item, "negative")
        adjudicate(project, rita, item, resolve_labels(project, ["neutral"]))

    labels = list(project.labels.all())
    control_set = evaluation_set(project, labels)

    assert trained_labels(project) == {plain.pk: "neutral"}
    assert [labels[int(t)].name for t in control_set.targets] == ["neutral"]
    assert exported_labels(alice, project) == {plain.pk: "neutral", control.pk: "neutral"}
