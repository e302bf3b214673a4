"""Bob answers items on the annotator screen; Charlie, an outsider, sees nothing."""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

from labeling.models import Annotation, Item, Label, Lease, Project
from tests.conftest import client_for

HTMX = {"HTTP_HX_REQUEST": "true"}


def label(project: Project, name: str) -> Label:
    return project.labels.get(name=name)


def served_item(client: Client, project: Project) -> Item:
    response = client.get(reverse("annotate", args=[project.pk]))
    assert response.status_code == 200
    item = shown_item(response)
    assert isinstance(item, Item)
    return item


def post_answer(client: Client, project: Project, **data: object) -> HttpResponse:
    response: HttpResponse = client.post(reverse("answer", args=[project.pk]), data, **HTMX)
    return response


def shown_item(response: HttpResponse) -> Item | None:
    """The item the page puts in front of the annotator, read from the HTML."""
    match = re.search(r'data-item-id="(\d+)"', response.content.decode())
    return Item.objects.get(pk=int(match.group(1))) if match else None


def test_the_screen_shows_one_item_with_hotkeyed_labels(project: Project, bob: User) -> None:
    response = client_for(bob).get(reverse("annotate", args=[project.pk]))

    assert response.status_code == 200
    assert shown_item(response).text in response.content.decode()
    assert b'data-hotkey="1"' in response.content
    assert b"<kbd>1</kbd> positive" in response.content


def test_answering_returns_the_next_item_as_a_fragment(project: Project, bob: User) -> None:
    client = client_for(bob)
    item = served_item(client, project)

    response = post_answer(
        client, project, item=item.pk, labels=label(project, "negative").pk, seconds="3.5"
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="workspace"')
    assert "<html" not in body
    answer = Annotation.objects.get(item=item, annotator=bob)
    assert answer.label_names() == ["negative"]
    assert answer.seconds_spent == 3.5
    assert shown_item(response) != item
    assert not Lease.objects.filter(item=item, annotator=bob).exists()


def test_a_repeated_submit_is_stored_once(project: Project, bob: User) -> None:
    client = client_for(bob)
    item = served_item(client, project)
    data = {"item": item.pk, "labels": label(project, "positive").pk, "client_id": uuid.uuid4()}

    post_answer(client, project, **data)
    post_answer(client, project, **data)

    assert Annotation.objects.filter(annotator=bob).count() == 1
    item.refresh_from_db()
    assert item.answer_count == 1


def test_a_reused_client_id_with_other_content_is_refused(project: Project, bob: User) -> None:
    client = client_for(bob)
    item = served_item(client, project)
    client_id = uuid.uuid4()
    post_answer(
        client, project, item=item.pk, labels=label(project, "positive").pk, client_id=client_id
    )

    response = post_answer(
        client, project, item=item.pk, labels=label(project, "negative").pk, client_id=client_id
    )

    assert response.status_code == 422
    assert b"already used for a different answer" in response.content
    assert Annotation.objects.get(annotator=bob).label_names() == ["positive"]


def test_single_label_projects_need_exactly_one_label(project: Project, bob: User) -> None:
    client = client_for(bob)
    item = served_item(client, project)

    response = post_answer(client, project, item=item.pk)

    assert response.status_code == 422
    assert b"Choose exactly one label" in response.content
    assert not Annotation.objects.exists()


def test_skipping_records_a_skip_and_serves_another_item(project: Project, bob: User) -> None:
    client = client_for(bob)
    item = served_item(client, project)

    response = post_answer(client, project, item=item.pk, skipped="on")

    answer = Annotation.objects.get(annotator=bob)
    assert answer.skipped
    assert shown_item(response) != item
    item.refresh_from_db()
    assert item.answer_count == 0


def test_undo_deletes_the_last_answer_and_serves_that_item_again(
    project: Project, bob: User
) -> None:
    client = client_for(bob)
    first = served_item(client, project)
    post_answer(client, project, item=first.pk, labels=label(project, "positive").pk)
    second = served_item(client, project)
    post_answer(client, project, item=second.pk, labels=label(project, "neutral").pk)

    response = client.post(reverse("undo", args=[project.pk]), **HTMX)

    assert shown_item(response) == second
    assert list(Annotation.objects.filter(annotator=bob).values_list("item", flat=True)) == [
        first.pk
    ]
    second.refresh_from_db()
    assert second.answer_count == 0
    assert served_item(client, project) == second


def test_reopening_an_answer_lets_bob_change_it(project: Project, bob: User) -> None:
    client = client_for(bob)
    item = served_item(client, project)
    post_answer(client, project, item=item.pk, labels=label(project, "positive").pk)

    page = client.get(reverse("reopen", args=[project.pk, item.pk]))
    assert page.context["item"] == item
    assert page.context["chosen"] == {label(project, "positive").pk}
    post_answer(client, project, item=item.pk, labels=label(project, "negative").pk)

    answer = Annotation.objects.get(annotator=bob, item=item)
    assert answer.label_names() == ["negative"]
    item.refresh_from_db()
    assert item.answer_count == 1


def test_an_item_of_another_project_is_refused(project: Project, bob: User, alice: User) -> None:
    from tests.conftest import make_project

    other = make_project(alice, name="Other", items=1)
    foreign = other.items.get()

    response = post_answer(
        client_for(bob), project, item=foreign.pk, labels=label(project, "positive").pk
    )

    assert response.status_code == 422
    assert not Annotation.objects.exists()


@pytest.mark.parametrize("name", ["annotate", "project_detail"])
def test_outsiders_get_404(project: Project, charlie: User, name: str) -> None:
    response = client_for(charlie).get(reverse(name, args=[project.pk]))
    assert response.status_code == 404


def test_outsiders_cannot_answer(project: Project, charlie: User) -> None:
    item = project.items.first()
    assert item is not None
    response = client_for(charlie).post(
        reverse("answer", args=[project.pk]),
        {"item": item.pk, "labels": label(project, "positive").pk},
    )
    assert response.status_code == 404
    assert not Annotation.objects.exists()


def test_anonymous_visitors_are_sent_to_log_in(project: Project) -> None:
    response = Client().get(reverse("annotate", args=[project.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_project_list_shows_only_my_projects(project: Project, bob: User, charlie: User) -> None:
    assert project.name in client_for(bob).get("/").content.decode()
    assert project.name not in client_for(charlie).get("/").content.decode()


def test_a_lead_creates_a_project_and_adds_an_annotator(alice: User, charlie: User) -> None:
    client = client_for(alice)
    response = client.post(
        reverse("project_create"),
        {"name": "Tickets", "labels": "bug, billing", "overlap": 1, "instructions": "Be quick"},
    )
    project = Project.objects.get(name="Tickets")
    assert response.status_code == 302
    assert [label.name for label in project.labels.all()] == ["bug", "billing"]
    assert project.role_of(alice) == "lead"

    client.post(
        reverse("project_members", args=[project.pk]),
        {"username": "charlie", "role": "annotator"},
    )
    client.post(
        reverse("project_members", args=[project.pk]),
        {"username": "newbie", "role": "reviewer", "password": "a long enough password 42"},
    )

    assert project.role_of(charlie) == "annotator"
    assert project.role_of(User.objects.get(username="newbie")) == "reviewer"
    assert client_for(charlie).get(reverse("annotate", args=[project.pk])).status_code == 200


def test_annotators_cannot_create_projects_or_manage_members(project: Project, bob: User) -> None:
    client = client_for(bob)
    assert client.get(reverse("project_create")).status_code == 403
    assert client.get(reverse("project_members", args=[project.pk])).status_code == 404


def test_undo_with_nothing_to_undo_says_so_in_place(project: Project, bob: User) -> None:
    response = client_for(bob).post(reverse("undo", args=[project.pk]), **HTMX)

    assert response.status_code == 200
    assert b"Nothing to undo." in response.content
    assert shown_item(response) is not None


def test_a_lead_describes_labels_and_tunes_the_loop(project: Project, alice: User) -> None:
    client = client_for(alice)
    page = client.get(reverse("project_settings", args=[project.pk]))
    labels = list(project.labels.all())
    data = {
        "project-name": project.name,
        "project-instructions": "Be kind",
        "project-overlap": 2,
        "project-lease_seconds": 300,
        "project-retrain_every": 25,
        "project-strategy": "margin",
        "project-show_suggestions": "",
        "project-encoder": "",
        "project-random_control_share": 0.2,
        "project-train_on_control": "on",
        "project-finetune_growth": 0.5,
        "project-finetune_min_labels": 30,
        "labels-TOTAL_FORMS": len(labels) + 1,
        "labels-INITIAL_FORMS": len(labels),
        "labels-MIN_NUM_FORMS": 0,
        "labels-MAX_NUM_FORMS": 1000,
    }
    for i, existing in enumerate(labels):
        data |= {
            f"labels-{i}-id": existing.pk,
            f"labels-{i}-name": existing.name,
            f"labels-{i}-hotkey": existing.hotkey,
            f"labels-{i}-color": existing.color,
            f"labels-{i}-description": "glowing praise" if existing.name == "positive" else "",
            f"labels-{i}-keywords": "",
        }
    new = len(labels)
    data |= {
        f"labels-{new}-name": "mixed",
        f"labels-{new}-hotkey": "m",
        f"labels-{new}-color": "#123456",
    }

    response = client.post(reverse("project_settings", args=[project.pk]), data)

    assert page.status_code == 200
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.overlap, project.retrain_every, project.strategy) == (2, 25, "margin")
    assert project.show_suggestions is False
    assert (project.random_control_share, project.train_on_control) == (0.2, True)
    assert (project.finetune_growth, project.finetune_min_labels) == (0.5, 30)
    assert project.labels.get(name="positive").description == "glowing praise"
    assert project.labels.get(name="mixed").hotkey == "m"

    data[f"labels-{new}-name"] = "positive"
    response = client.post(reverse("project_settings", args=[project.pk]), data)
    assert response.status_code == 422
    assert b"Two labels are named" in response.content


def test_annotators_cannot_change_settings(project: Project, bob: User) -> None:
    response = client_for(bob).get(reverse("project_settings", args=[project.pk]))
    assert response.status_code == 404
