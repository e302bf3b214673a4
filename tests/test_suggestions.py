"""Bob sees the model's suggestion only where it is usually right: from the confidence at
which the suggestions annotators answered, on items picked the same way (by the model, or at
random as controls), were right 4 times in 5 (the lower end of a one-sided 95% interval), or
from the threshold Alice sets. Below it the page says the model is unsure, and where it is
shown the suggested button is marked. Each answer records what was suggested and whether the
page showed it; each retrain measures the thresholds from those answers.

Alice's "Topics" project has 24 items; the queue ranks a sure item (90%) before an unsure one
(60%), both suggesting sports.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from labeling import queue
from labeling.models import Annotation, Item, Project, QueueEntry, Role
from labeling.services import resolve_labels, submit_answer
from modeling.models import ModelVersion
from modeling.services.version_metrics import suggestion_thresholds
from tests.conftest import client_for, make_topics_project, serve, store_predictions_of


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


def measured(
    project: Project, suggest_above: float | None, *, controls: float | None = None
) -> None:
    """A head version that measured these thresholds (picked items, random controls)."""

    def figures(threshold: float | None) -> dict[str, object]:
        return {"threshold": threshold, "answers": 30, "shown": 0, "shown_right": None}

    ModelVersion.objects.create(
        project=project,
        number=1,
        encoder="test",
        strategy="margin",
        labels_used=20,
        snapshot_at=timezone.now(),
        metrics={"suggestions": {"picked": figures(suggest_above), "controls": figures(controls)}},
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


def test_a_random_control_is_shown_a_suggestion_by_the_controls_threshold(
    topics: Project, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the items it picked the model is never sure enough; on random ones from 85%.
    measured(topics, None, controls=0.85)
    monkeypatch.setattr(queue, "_draw", lambda: 0.0)  # every request draws a control
    topics.random_control_share = 1.0
    topics.save()
    sure = topics.items.order_by("id")[0]
    Item.objects.exclude(pk=sure.pk).update(random_key=2.0)  # the sure item comes first

    page = label_page(bob, topics)

    assert "Model suggests <strong>sports</strong> · 90% sure" in page
    assert Item.objects.get(pk=sure.pk).is_random_control


def test_bobs_answers_record_what_was_suggested_and_whether_he_saw_it(
    topics: Project, bob: User
) -> None:
    measured(topics, 0.8)
    sports = topics.labels.get(name="sports")

    answer_shown(bob, topics, label_page(bob, topics))  # the sure one, shown
    answer_shown(bob, topics, label_page(bob, topics))  # the unsure one, not shown

    sure, unsure = Annotation.objects.filter(annotator=bob).order_by("suggestion_confidence")[::-1]
    assert (sure.suggested_labels, sure.suggestion_confidence, sure.suggestion_shown) == (
        [sports.pk],
        0.9,
        True,
    )
    assert (unsure.suggestion_confidence, unsure.suggestion_shown) == (0.6, False)


def test_a_retrain_measures_the_picked_items_threshold_on_their_answers(
    alice: User, bob: User
) -> None:
    project = make_topics_project(alice, (bob, Role.ANNOTATOR), per_topic=40)
    sports = project.labels.get(name="sports")
    items = list(project.items.order_by("id"))
    picked, controls = items[:40], items[40:60]
    Item.objects.filter(pk__in=[item.pk for item in controls]).update(is_random_control=True)
    # On the items the model picked, its suggestion (sports, 50-90% sure) was right half the
    # time whatever its confidence; on the random controls, always.
    for n, item in enumerate(picked):
        answer_with_suggestion(project, bob, item, sports.pk, 0.5 + 0.4 * n / 39, n % 2 == 0)
    for item in controls:
        answer_with_suggestion(project, bob, item, sports.pk, 0.95, True)

    # The version's own guesses on the labeled controls were right from 70% on.
    measured_now = suggestion_thresholds(project, {"n": 20, "suggest_above": 0.7})

    assert measured_now["picked"]["threshold"] is None  # never usually right: never shown
    assert measured_now["picked"]["answers"] == 40
    assert measured_now["controls"]["threshold"] == 0.7
    assert measured_now["controls"]["answers"] == 20


def test_where_picked_items_are_usually_right_from_some_confidence_they_are_shown_from_there(
    alice: User, bob: User
) -> None:
    project = make_topics_project(alice, (bob, Role.ANNOTATOR), per_topic=40)
    sports = project.labels.get(name="sports")
    for n, item in enumerate(project.items.order_by("id")[:80]):
        confidence = 0.5 + 0.4 * n / 79
        answer_with_suggestion(project, bob, item, sports.pk, confidence, confidence >= 0.7)

    threshold = suggestion_thresholds(project, {"n": 0})["picked"]["threshold"]

    assert threshold is not None
    assert 0.65 <= threshold <= 0.75


def answer_with_suggestion(
    project: Project, user: User, item: Item, suggested: int, confidence: float, right: bool
) -> None:
    """The queue served the item suggesting `suggested`; the user agreed if `right`."""
    serve(project, user, item)
    queue.Lease.objects.filter(item=item, annotator=user).update(
        suggested_labels=[suggested], suggestion_confidence=confidence
    )
    names = {label.pk: label.name for label in project.labels.all()}
    other = next(name for pk, name in names.items() if pk != suggested)
    submit_answer(
        project, user, item, resolve_labels(project, [names[suggested] if right else other])
    )


def test_alice_reads_on_the_project_page_where_suggestions_are_shown(
    topics: Project, alice: User
) -> None:
    measured(topics, None, controls=0.85)

    page = client_for(alice).get(f"/projects/{topics.pk}/").content.decode()

    assert "Items the model picked: not shown yet" in page
    assert "no confidence was right 4 in 5 over its 30 answers" in page
    assert "Random controls: shown from 85% sure" in page


def test_an_item_outside_the_ranked_queue_takes_the_newest_prediction_of_every_item(
    topics: Project, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A random control the queue never ranked: the newest version predicted it finance.
    outside = topics.items.order_by("id")[5]
    version = store_predictions_of(topics, 2, {outside: ("finance", 0.95)})
    version.metrics = {
        "suggestions": {
            kind: {"threshold": 0.9, "answers": 30, "shown": 0, "shown_right": None}
            for kind in ("picked", "controls")
        }
    }
    version.save()
    monkeypatch.setattr(queue, "_draw", lambda: 0.0)
    topics.random_control_share = 1.0
    topics.save()
    Item.objects.exclude(pk=outside.pk).update(random_key=2.0)

    page = label_page(bob, topics)
    answer_shown(bob, topics, page)

    assert "Model suggests <strong>finance</strong> · 95% sure" in page
    answered = Annotation.objects.get(annotator=bob)
    finance = topics.labels.get(name="finance")
    assert (answered.suggested_labels, answered.suggestion_shown) == ([finance.pk], True)
