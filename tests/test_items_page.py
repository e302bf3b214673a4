"""Alice browses her project's items: search, filters, an item's page, and labels in bulk.

The "Topics" project has 12 sports and 12 finance texts; Bob annotates, Rita reviews. Alice
finds the finance texts by a word they share, gives them all the label finance in one go, and
training and the export follow her ruling, while Bob's answers stay as he gave them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from labeling.item_browser import PAGE_SIZE
from labeling.models import Adjudication, Annotation, Item, Project, QueueEntry, Role
from modeling.services.training_data import training_set
from tests.conftest import add_items, client_for, label, make_topics_project, token_client


@pytest.fixture
def topics(alice: User, bob: User, rita: User) -> Project:
    return make_topics_project(alice, (bob, Role.ANNOTATOR), (rita, Role.REVIEWER))


def items_url(project: Project) -> str:
    return reverse("project_items", args=[project.pk])


def listed(response: Any) -> list[int]:
    """The item ids the page lists, in order."""
    assert response.status_code == 200, response.content[:300]
    return [int(pk) for pk in re.findall(r'data-item="(\d+)"', response.content.decode())]


def finance(project: Project) -> list[Item]:
    return list(project.items.filter(text__contains="Shares of").order_by("pk"))


def test_alice_finds_items_by_a_word_and_by_their_id(topics: Project, alice: User) -> None:
    client = client_for(alice)
    shares = listed(client.get(items_url(topics), {"q": "shares"}))  # any case

    assert sorted(shares) == [item.pk for item in finance(topics)]
    tagged = finance(topics)[0]
    tagged.external_id = "ticket-77"
    tagged.save()
    assert listed(client.get(items_url(topics), {"q": "ticket-77"})) == [tagged.pk]


def test_filters_by_state_label_and_annotator(topics: Project, alice: User, bob: User) -> None:
    first, second, third = finance(topics)[:3]
    label(topics, bob, first, "finance")
    label(topics, bob, second, "sports")
    client = client_for(alice)

    assert set(listed(client.get(items_url(topics), {"state": "labeled"}))) == {
        first.pk,
        second.pk,
    }
    assert third.pk in listed(client.get(items_url(topics), {"state": "unlabeled"}))
    assert listed(client.get(items_url(topics), {"label": "finance"})) == [first.pk]
    assert set(listed(client.get(items_url(topics), {"annotator": "bob"}))) == {
        first.pk,
        second.pk,
    }


def test_a_disputed_item_is_listed_until_someone_rules(
    alice: User, bob: User, dora: User, rita: User
) -> None:
    project = make_topics_project(alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), overlap=2)
    item = finance(project)[0]
    label(project, bob, item, "finance")
    label(project, dora, item, "sports")
    client = client_for(alice)
    assert listed(client.get(items_url(project), {"state": "disputed"})) == [item.pk]

    finance_label = project.labels.get(name="finance")
    client.post(reverse("resolve_item", args=[project.pk, item.pk]), {"labels": [finance_label.pk]})

    assert listed(client.get(items_url(project), {"state": "disputed"})) == []
    assert listed(client.get(items_url(project), {"state": "ruled"})) == [item.pk]


def test_pages_follow_each_other_without_gaps_or_repeats(topics: Project, alice: User) -> None:
    add_items(topics, [f"extra text number {n}" for n in range(PAGE_SIZE + 10)])
    client = client_for(alice)
    seen: list[int] = []
    url = items_url(topics)
    while url:
        response = client.get(url)
        seen += listed(response)
        found = re.search(r'href="([^"]+)" rel="next"', response.content.decode())
        url = found.group(1).replace("&amp;", "&") if found else ""

    assert seen == sorted(topics.items.values_list("pk", flat=True), reverse=True)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"state": "nonsense"}, "Unknown state"),
        ({"sort": "sideways"}, "Unknown order"),
        ({"label": "weather"}, "No label"),
        ({"after": "²"}, "after"),
        ({"q": "x" * 201}, "at most 200 characters"),
    ],
)
def test_a_bad_parameter_is_refused_with_a_reason(
    topics: Project, alice: User, params: dict[str, str], words: str
) -> None:
    response = client_for(alice).get(items_url(topics), params)

    assert response.status_code == 400
    assert words in response.content.decode()


def test_only_leads_and_reviewers_open_the_items_page(
    topics: Project, bob: User, rita: User, charlie: User
) -> None:
    assert client_for(bob).get(items_url(topics)).status_code == 404
    assert client_for(charlie).get(items_url(topics)).status_code == 404
    page = client_for(rita).get(items_url(topics))
    assert page.status_code == 200
    assert b"Give the label" not in page.content  # reviewers look; leads act in bulk
    bulk = reverse("bulk_label", args=[topics.pk])
    assert (
        client_for(rita).post(bulk, {"label_to_give": "finance", "scope": "all"}).status_code == 404
    )


def test_the_item_page_shows_every_answer_and_alice_relabels_from_it(
    topics: Project, alice: User, bob: User
) -> None:
    item = finance(topics)[0]
    item.metadata = {"source": "newswire"}
    item.save()
    label(topics, bob, item, "sports")
    client = client_for(alice)
    url = reverse("item_detail", args=[topics.pk, item.pk])
    page = client.get(url).content.decode()
    assert "bob" in page
    assert "newswire" in page
    assert re.search(r"data-final>sports<", page)

    finance_label = topics.labels.get(name="finance")
    response = client.post(
        reverse("resolve_item", args=[topics.pk, item.pk]),
        {"labels": [finance_label.pk], "next": url},
    )

    assert response["Location"] == url  # back to the item, not to the people page
    assert re.search(r"data-final>finance<", client.get(url).content.decode())
    assert Annotation.objects.get(item=item).label_names() == ["sports"]  # Bob's answer stays


def test_an_outside_next_address_is_not_followed(topics: Project, alice: User) -> None:
    item = finance(topics)[0]
    finance_label = topics.labels.get(name="finance")
    response = client_for(alice).post(
        reverse("resolve_item", args=[topics.pk, item.pk]),
        {"labels": [finance_label.pk], "next": "https://evil.example/phish"},
    )
    assert "evil.example" not in response["Location"]


def test_alice_labels_every_matching_item_in_bulk_and_training_and_export_follow(
    topics: Project, alice: User, bob: User
) -> None:
    texts = finance(topics)
    label(topics, bob, texts[0], "sports")  # Bob got one wrong
    QueueEntry.objects.create(project=topics, item=texts[1], rank=0)
    client = client_for(alice)
    bulk = reverse("bulk_label", args=[topics.pk])
    asked = {"q": "shares", "label_to_give": "finance", "scope": "all"}

    confirm = client.post(bulk, asked)
    assert "Give 12 items the label finance?" in confirm.content.decode()
    assert not Adjudication.objects.exists()  # nothing happens before the confirmation

    done = client.post(bulk, {**asked, "confirm": "1"}, follow=True)

    assert "12 items now have the label finance" in done.content.decode()
    rulings = Adjudication.objects.filter(item__project=topics)
    assert rulings.count() == 12
    assert {r.resolved_by for r in rulings} == {alice}
    assert all("Bulk label" in r.note for r in rulings)
    assert Annotation.objects.get(item=texts[0]).label_names() == ["sports"]
    assert not QueueEntry.objects.filter(item=texts[1]).exists()
    labels = list(topics.labels.order_by("position"))
    trained = training_set(topics, labels)
    assert set(trained.item_ids) == {item.pk for item in texts}  # unanswered ones included
    assert trained.class_counts == {"sports": 0, "finance": 12}
    export = token_client(alice).get(
        f"/api/v1/projects/{topics.pk}/export/", {"format": "jsonl", "final_only": "1"}
    )
    rows = [json.loads(line) for line in b"".join(export.streaming_content).splitlines()]  # type: ignore[attr-defined]
    assert {row["id"]: row["label"] for row in rows} == {item.pk: "finance" for item in texts}


def test_bulk_labeling_ticked_items_touches_only_those(topics: Project, alice: User) -> None:
    first, second = finance(topics)[:2]
    client = client_for(alice)
    bulk = reverse("bulk_label", args=[topics.pk])

    client.post(
        bulk,
        {
            "label_to_give": "finance",
            "scope": "selected",
            "item": [first.pk, second.pk],
            "confirm": "1",
        },
    )
    nothing = client.post(bulk, {"label_to_give": "finance", "scope": "selected"}, follow=True)

    assert set(Adjudication.objects.values_list("item_id", flat=True)) == {first.pk, second.pk}
    assert "Tick some items" in nothing.content.decode()


def test_the_disagreement_order_puts_the_split_answers_first(
    alice: User, bob: User, dora: User
) -> None:
    project = make_topics_project(alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), overlap=2)
    agreed, split, single = finance(project)[:3]
    for item, (bobs, doras) in {
        agreed: ("finance", "finance"),
        split: ("finance", "sports"),
    }.items():
        label(project, bob, item, bobs)
        label(project, dora, item, doras)
    label(project, bob, single, "finance")

    order = listed(client_for(alice).get(items_url(project), {"sort": "disagreement"}))

    assert order == [split.pk, agreed.pk]  # only items with two answers or more
