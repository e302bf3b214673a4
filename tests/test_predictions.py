"""Every retrain predicts every item, the labeled ones included, so that Alice's exports and
her items page always carry the model's guess and its confidence."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from labeling.models import Item, Project
from modeling.models import (
    KEPT_PREDICTION_SETS,
    PredictionSet,
    latest_predictions,
    prediction_history,
)
from modeling.services.refresh import refresh_model
from tests.conftest import client_for, label, serve, topic_of


def answer_some(project: Project, user: User, n: int) -> list[Item]:
    items = list(project.items.order_by("id"))
    chosen = [item for item in items if topic_of(item) == "sports"][: n // 2]
    chosen += [item for item in items if topic_of(item) == "finance"][: n - len(chosen)]
    for item in chosen:
        serve(project, user, item)
        label(project, user, item, topic_of(item))
    return chosen


def test_a_retrain_predicts_every_item_labeled_or_not(topics: Project, bob: User) -> None:
    answered = answer_some(topics, bob, 22)

    version = refresh_model(topics.pk, run_id="run-1")

    assert version is not None
    predictions = latest_predictions(topics)
    assert predictions is not None
    assert predictions.version == version.number
    every_item = list(topics.items.values_list("pk", flat=True))
    guesses = predictions.predictions_of(every_item)
    assert set(guesses) == set(every_item)
    names = dict(topics.labels.values_list("pk", "name"))
    right = sum(
        names[guesses[item.pk].label_ids[0]] == topic_of(item) for item in topics.items.all()
    )
    assert right >= 20  # of 24: the two topics are easy to tell apart
    assert all(0.5 <= guess.confidence <= 1 for guess in guesses.values())
    assert all(0 <= guess.uncertainty <= 1 for guess in guesses.values())
    # A labeled item's guess comes from cross-validation, not from a head that saw its label.
    assert {pk for pk, guess in guesses.items() if guess.held_out} == {i.pk for i in answered}


def test_the_export_carries_a_prediction_for_every_row(
    topics: Project, alice: User, bob: User
) -> None:
    answer_some(topics, bob, 22)
    version = refresh_model(topics.pk, run_id="run-1")
    assert version is not None

    response = client_for(alice).get(f"/api/v1/projects/{topics.pk}/export/")

    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]  # type: ignore[attr-defined]
    assert len(rows) == 24
    assert all(row["prediction"] in {"sports", "finance"} for row in rows)
    assert all(row["model_version"] == version.number for row in rows)
    labeled = [row for row in rows if row["label"] is not None]
    assert len(labeled) == 22
    assert all(0 < row["confidence"] <= 1 for row in rows)


def test_each_item_keeps_its_prediction_history_over_the_newest_versions(
    topics: Project, bob: User
) -> None:
    answer_some(topics, bob, 22)
    item = topics.items.order_by("id").last()
    assert item is not None
    numbers = []
    for run in range(3):
        version = refresh_model(topics.pk, run_id=f"run-{run}")
        assert version is not None
        numbers.append(version.number)

    history = prediction_history(topics, item.pk)

    assert [entry.version for entry in history] == numbers[::-1]
    assert PredictionSet.objects.filter(project=topics).count() == 3


@pytest.mark.parametrize("versions", [KEPT_PREDICTION_SETS + 2])
def test_only_the_newest_prediction_sets_are_kept(
    topics: Project, bob: User, versions: int
) -> None:
    answer_some(topics, bob, 22)
    for run in range(versions):
        assert refresh_model(topics.pk, run_id=f"run-{run}") is not None

    kept = PredictionSet.objects.filter(project=topics).order_by("version__number")

    assert kept.count() == KEPT_PREDICTION_SETS
    assert kept.first().version.number == versions - KEPT_PREDICTION_SETS + 1  # type: ignore[union-attr]
