"""Alice (lead) sends items she doubts to review from the items page, with a note; Rita
(reviewer) finds them on the people page beside the disputed ones and rules: the ruling is the
item's final label and takes it off her list. Alice can withdraw what is still waiting. Bob
(annotator) and Rita may not send or withdraw.

Alice's "Topics" project has 12 sports and 12 finance texts.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling.models import Adjudication, Item, Project, ReviewRequest, Role
from modeling.services.training_data import training_set
from tests.conftest import client_for, label, make_topics_project


@pytest.fixture
def topics(alice: User, bob: User, rita: User) -> Project:
    return make_topics_project(alice, (bob, Role.ANNOTATOR), (rita, Role.REVIEWER))


def finance(project: Project) -> list[Item]:
    return list(project.items.filter(text__contains="Shares of").order_by("pk"))


def review_url(project: Project) -> str:
    return reverse("bulk_review", args=[project.pk])


def people_page(client: Client, project: Project) -> str:
    return client.get(reverse("people", args=[project.pk])).content.decode()


def on_the_review_list(page: str) -> set[int]:
    return {int(pk) for pk in re.findall(r'id="review-request-(\d+)"', page)}


def test_alice_sends_the_finance_items_and_rita_rules_on_one(
    topics: Project, alice: User, bob: User, rita: User
) -> None:
    texts = finance(topics)
    label(topics, bob, texts[0], "sports")  # Bob got one wrong
    client = client_for(alice)
    asked = {"q": "shares", "scope": "all"}

    confirm = client.post(review_url(topics), asked)
    assert "Send 12 items to review?" in confirm.content.decode()
    assert "12 are new to the reviewers' list." in confirm.content.decode()
    assert not ReviewRequest.objects.exists()  # nothing happens before the confirmation

    done = client.post(
        review_url(topics), {**asked, "confirm": "1", "note": "Bob's finance answers"}, follow=True
    )

    assert "12 items sent to review" in done.content.decode()
    requests = ReviewRequest.objects.filter(item__project=topics)
    assert {r.item_id for r in requests} == {item.pk for item in texts}
    assert {(r.requested_by, r.note) for r in requests} == {(alice, "Bob's finance answers")}
    listed = client.get(reverse("project_items", args=[topics.pk]), {"state": "sent_to_review"})
    assert {item.pk for item, *_ in listed.context["rows"]} == {item.pk for item in texts}
    assert listed.content.decode().count("data-in-review") == 12

    page = people_page(client_for(rita), topics)
    assert on_the_review_list(page) == {item.pk for item in texts}
    assert "Bob&#x27;s finance answers" in page
    assert "bob: sports" in page  # the answer she is asked about

    finance_label = topics.labels.get(name="finance")
    client_for(rita).post(
        reverse("resolve_item", args=[topics.pk, texts[0].pk]), {"labels": [finance_label.pk]}
    )

    assert on_the_review_list(people_page(client_for(rita), topics)) == {
        item.pk for item in texts[1:]
    }
    item_page = client.get(reverse("item_detail", args=[topics.pk, texts[0].pk]))
    assert re.search(r"data-final>finance<", item_page.content.decode())
    labels = list(topics.labels.order_by("position"))
    trained = training_set(topics, labels)
    index = trained.item_ids.index(texts[0].pk)
    assert labels[int(trained.targets[index])].name == "finance"


def test_alice_withdraws_what_is_still_waiting(topics: Project, alice: User, rita: User) -> None:
    texts = finance(topics)[:3]
    client = client_for(alice)
    ticked = {"scope": "selected", "item": [str(item.pk) for item in texts]}
    client.post(review_url(topics), {**ticked, "confirm": "1"})
    waiting = {"state": "sent_to_review", "scope": "all", "withdraw": "1"}

    confirm = client.post(review_url(topics), waiting)
    assert "Withdraw 3 items from review?" in confirm.content.decode()
    assert ReviewRequest.objects.count() == 3
    done = client.post(review_url(topics), {**waiting, "confirm": "1"}, follow=True)

    assert "3 items withdrawn from review" in done.content.decode()
    assert not ReviewRequest.objects.exists()
    page = people_page(client_for(rita), topics)
    assert on_the_review_list(page) == set()
    assert "Nothing sent to review" in page


def test_sending_again_keeps_the_first_request_and_counts_only_the_new(
    topics: Project, alice: User
) -> None:
    first, second, third = finance(topics)[:3]
    client = client_for(alice)
    client.post(
        review_url(topics),
        {"scope": "selected", "item": [first.pk, second.pk], "confirm": "1", "note": "first"},
    )
    sent_at = ReviewRequest.objects.get(item=first).created_at
    again = {"scope": "selected", "item": [first.pk, second.pk, third.pk]}

    confirm = client.post(review_url(topics), again).content.decode()
    assert "Send 3 items to review?" in confirm
    assert "1 is new to the reviewers' list; 2 already wait there and keep their request" in (
        confirm
    )
    client.post(review_url(topics), {**again, "confirm": "1", "note": "second"})
    unchanged = client.post(review_url(topics), {**again, "confirm": "1"}, follow=True)

    notes = dict(ReviewRequest.objects.values_list("item_id", "note"))
    assert notes == {first.pk: "first", second.pk: "first", third.pk: "second"}
    assert ReviewRequest.objects.get(item=first).created_at == sent_at
    assert "They were all waiting for review already" in unchanged.content.decode()


def test_labeling_in_bulk_is_a_ruling_and_ends_the_request(topics: Project, alice: User) -> None:
    first, second = finance(topics)[:2]
    client = client_for(alice)
    ticked = {"scope": "selected", "item": [first.pk, second.pk], "confirm": "1"}
    client.post(review_url(topics), ticked)

    client.post(reverse("bulk_label", args=[topics.pk]), {**ticked, "label_to_give": "finance"})

    assert Adjudication.objects.filter(item__in=[first, second]).count() == 2
    assert not ReviewRequest.objects.exists()


def test_the_item_page_tells_who_sent_it_and_alice_withdraws_it_there(
    topics: Project, alice: User, rita: User
) -> None:
    item = finance(topics)[0]
    client = client_for(alice)
    url = reverse("item_detail", args=[topics.pk, item.pk])
    send = reverse("item_review", args=[topics.pk, item.pk])

    sent = client.post(send, {"note": "sarcasm?"}, follow=True)

    request = ReviewRequest.objects.get(item=item)
    when = timezone.localtime(request.created_at).strftime("%Y-%m-%d %H:%M")
    assert sent.redirect_chain[-1][0] == url
    assert f"Sent to review by alice on {when}: sarcasm?" in sent.content.decode()
    assert "Sent to review by alice" in client_for(rita).get(url).content.decode()
    assert "Withdraw from review" not in client_for(rita).get(url).content.decode()

    withdrawn = client.post(send, {"withdraw": "1"}, follow=True)

    assert not ReviewRequest.objects.exists()
    assert "Sent to review by" not in withdrawn.content.decode()
    assert "Send to review" in withdrawn.content.decode()


def test_annotators_and_reviewers_may_not_send_or_withdraw(
    topics: Project, alice: User, bob: User, rita: User
) -> None:
    first, second = finance(topics)[:2]
    client_for(alice).post(
        review_url(topics), {"scope": "selected", "item": [first.pk], "confirm": "1"}
    )

    for user in (bob, rita):
        client = client_for(user)
        for form in ({"item": [second.pk]}, {"item": [first.pk], "withdraw": "1"}):
            response = client.post(
                review_url(topics), {"scope": "selected", "confirm": "1", **form}
            )
            assert response.status_code == 404
        assert client.post(reverse("item_review", args=[topics.pk, second.pk])).status_code == 404

    assert list(ReviewRequest.objects.values_list("item_id", flat=True)) == [first.pk]
    items_page = client_for(rita).get(reverse("project_items", args=[topics.pk]))
    assert items_page.status_code == 200  # Rita sees the items, without the bulk actions
    assert "Send to review" not in items_page.content.decode()


def test_nothing_ticked_sends_nothing(topics: Project, alice: User) -> None:
    response = client_for(alice).post(
        review_url(topics),
        {"scope": "selected", "confirm": "1", "note": "all of them?"},
        follow=True,
    )

    assert "Tick some items" in response.content.decode()
    assert not ReviewRequest.objects.exists()


def test_a_note_too_long_is_refused(topics: Project, alice: User) -> None:
    item = finance(topics)[0]
    response = client_for(alice).post(
        review_url(topics),
        {"scope": "selected", "item": [item.pk], "confirm": "1", "note": "x" * 1001},
        follow=True,
    )

    assert "at most 1000 characters" in response.content.decode()
    assert not ReviewRequest.objects.exists()
