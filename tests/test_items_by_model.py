"""Alice lets the model help her through the items page: what it predicts and how surely, the
labels it doubts, and search by meaning ("more like this", or a phrase a worker embeds).

Her "Topics" project has 12 sports and 12 finance texts; Bob has answered 22 of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from labeling.models import Adjudication, Item, Project
from modeling.models import latest_predictions
from modeling.services.refresh import refresh_model
from tests.conftest import client_for, label, make_topics_project, serve, topic_of
from tests.worker import running_worker, wait_for


def listed(client: Client, project: Project, **params: str) -> list[int]:
    response = client.get(f"/projects/{project.pk}/items/", params)
    assert response.status_code == 200, response.content
    return [item.pk for item, *_ in response.context["rows"]]


def answer(project: Project, user: User, items: list[Item], name: str | None = None) -> None:
    for item in items:
        serve(project, user, item)
        label(project, user, item, name or topic_of(item))


@pytest.fixture
def trained(topics: Project, bob: User) -> Project:
    items = list(topics.items.order_by("id"))
    answer(topics, bob, items[:22])
    assert refresh_model(topics.pk, run_id="run-1") is not None
    return topics


def texts(ids: list[int]) -> list[str]:
    by_id = dict(Item.objects.filter(pk__in=ids).values_list("pk", "text"))
    return [by_id[pk] for pk in ids]


def test_alice_lists_what_the_model_predicts_as_finance(trained: Project, alice: User) -> None:
    finance = listed(client_for(alice), trained, predicted="finance")

    assert len(finance) >= 10
    assert sum("Shares" in text for text in texts(finance)) >= len(finance) - 1


def test_a_confidence_range_and_the_confidence_orders_agree_with_the_stored_predictions(
    trained: Project, alice: User
) -> None:
    client = client_for(alice)
    predictions = latest_predictions(trained)
    assert predictions is not None
    every = listed(client, trained)
    confidence = {pk: g.confidence for pk, g in predictions.predictions_of(every).items()}
    cut = sorted(confidence.values())[len(confidence) // 2]
    percent = int(cut * 100)

    surer = listed(client, trained, min_confidence=str(percent))
    least_first = listed(client, trained, sort="least_confident")
    most_first = listed(client, trained, sort="most_confident")

    assert set(surer) == {pk for pk, c in confidence.items() if c >= percent / 100}
    assert [confidence[pk] for pk in least_first] == sorted(confidence.values())
    assert most_first == least_first[::-1] or [confidence[pk] for pk in most_first] == sorted(
        confidence.values(), reverse=True
    )
    assert sorted(least_first) == sorted(every)


def test_the_likely_label_error_filter_finds_the_answer_bob_got_wrong(
    topics: Project, alice: User, bob: User
) -> None:
    items = list(topics.items.order_by("id"))
    sports = [item for item in items if topic_of(item) == "sports"]
    finance = [item for item in items if topic_of(item) == "finance"]
    answer(topics, bob, sports[:11] + finance[:11])
    wrong = sports[11]
    answer(topics, bob, [wrong], "finance")
    assert refresh_model(topics.pk, run_id="run-1") is not None

    suspects = listed(client_for(alice), topics, suspect="1")

    assert suspects == [wrong.pk]


def test_more_like_this_lists_the_closest_items_first(trained: Project, alice: User) -> None:
    start = next(item for item in trained.items.order_by("id") if topic_of(item) == "sports")

    response = client_for(alice).get(f"/projects/{trained.pk}/items/", {"like": start.pk})

    rows = response.context["rows"]
    closeness = [close for *_, close in rows]
    assert start.pk not in [item.pk for item, *_ in rows]
    assert len(rows) == 23
    assert closeness == sorted(closeness, reverse=True)
    assert [topic_of(item) for item, *_ in rows[:11]] == ["sports"] * 11
    assert b"Closest first to item" in response.content


def test_bad_model_filters_are_refused_with_the_reason(trained: Project, alice: User) -> None:
    client = client_for(alice)
    for params, message in [
        ({"predicted": "weather"}, b"No label"),
        ({"min_confidence": "90", "max_confidence": "10"}, b"lowest confidence is above"),
        ({"min_confidence": "120"}, b"min_confidence must be a whole number from 0 to 100"),
        ({"like": "999999"}, b"No item 999999"),
        ({"suspect": "maybe"}, b"suspect"),
    ]:
        response = client.get(f"/projects/{trained.pk}/items/", params)
        assert response.status_code == 400, params
        assert message in response.content, params


def test_before_the_first_model_the_page_says_so(topics: Project, alice: User) -> None:
    response = client_for(alice).get(f"/projects/{topics.pk}/items/", {"predicted": "sports"})

    assert response.context["rows"] == []
    assert b"There is no model yet" in response.content


def test_alice_labels_every_confident_finance_prediction_in_bulk(
    trained: Project, alice: User
) -> None:
    filters = {"predicted": "finance", "min_confidence": "50"}
    expected = listed(client_for(alice), trained, **filters)

    response = client_for(alice).post(
        f"/projects/{trained.pk}/items/bulk/label/",
        {**filters, "scope": "all", "label_to_give": "finance", "confirm": "1"},
    )

    assert response.status_code == 302
    assert set(Adjudication.objects.values_list("item_id", flat=True)) == set(expected)


@pytest.mark.django_db(transaction=True)
def test_alice_searches_by_meaning_and_a_worker_embeds_her_phrase(
    alice: User, bob: User, tmp_path: Path
) -> None:
    topics = make_topics_project(alice, (bob, "annotator"))
    answer(topics, bob, list(topics.items.order_by("id"))[:22])
    assert refresh_model(topics.pk, run_id="run-1") is not None
    client = client_for(alice)
    url = f"/projects/{topics.pk}/items/"

    with running_worker(tmp_path / "worker.log"):
        first = client.get(url, {"meaning": "a football game"})
        assert b"A worker is embedding your phrase" in first.content
        assert b'hx-trigger="load delay:700ms"' in first.content  # the page asks again
        wait_for(
            lambda: bool(client.get(url, {"meaning": "a football game"}).context["rows"]),
            timeout=60,
            what="the phrase's embedding",
            poll=0.5,
        )

    found = client.get(url, {"meaning": "a football game"})
    rows = found.context["rows"]
    assert b"A worker is embedding" not in found.content
    assert [topic_of(item) for item, *_ in rows[:12]] == ["sports"] * 12
