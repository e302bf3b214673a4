"""Finding 13 of the penetration test (issue 15): labels stay independent.

Alice leads, Bob and Dora annotate, Rita reviews; at overlap 1 every item needs one answer.
Nobody answers an item the queue did not serve them, annotators read only their own answers,
an export job is its requester's, and the export's annotator filter tells nothing about
accounts outside the project.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from labeling.models import Annotation, ExportJob, Item, Lease, Project, Role
from labeling.queue import lease_next_item
from labeling.services import undo_last_answer
from tests.conftest import client_for, label, make_project, make_user, token_client

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def project(alice: User, bob: User, dora: User, rita: User) -> Project:
    return make_project(
        alice, (bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), (rita, Role.REVIEWER), items=6
    )


def api(project: Project, path: str) -> str:
    return f"/api/v1/projects/{project.pk}/{path}"


def answer_by_api(user: User, project: Project, item: Item, name: str = "positive") -> Any:
    return token_client(user).post(
        api(project, "annotations/"),
        json.dumps({"item": item.pk, "labels": [name]}),
        content_type="application/json",
    )


def answer_on_the_page(user: User, project: Project, item: Item) -> Any:
    positive = project.labels.get(name="positive")
    return client_for(user).post(
        reverse("answer", args=[project.pk]), {"item": item.pk, "labels": [positive.pk]}, **HTMX
    )


# --- Answers only to what the queue served ----------------------------------------------------


def test_bob_cannot_answer_an_item_by_id_that_was_never_served_to_him(
    project: Project, bob: User
) -> None:
    item = project.items.order_by("pk").last()
    assert item is not None

    by_api = answer_by_api(bob, project, item)
    on_page = answer_on_the_page(bob, project, item)

    assert by_api.status_code == 409
    assert "This item was not served to you" in by_api.json()["detail"]
    assert on_page.status_code == 422
    assert "This item was not served to you" in on_page.content.decode()
    assert not Annotation.objects.filter(item=item).exists()
    item.refresh_from_db()
    assert item.answer_count == 0


def test_rita_cannot_add_a_second_answer_to_an_item_bob_answered_at_overlap_one(
    project: Project, bob: User, rita: User
) -> None:
    item = lease_next_item(project, bob)
    assert item is not None
    label(project, bob, item, "negative")

    response = answer_by_api(rita, project, item)

    assert response.status_code == 409
    item.refresh_from_db()
    assert item.answer_count == 1


def test_bob_answers_what_he_was_served_changes_it_later_and_answers_again_after_undo(
    project: Project, bob: User
) -> None:
    item = lease_next_item(project, bob)
    assert item is not None
    assert answer_by_api(bob, project, item).status_code == 201
    # Reopened from his history: his own answer, changed.
    changed = answer_by_api(bob, project, item, "neutral")
    assert changed.status_code == 200
    assert Annotation.objects.get(item=item, annotator=bob).label_names() == ["neutral"]

    assert undo_last_answer(project, bob) == item
    assert answer_on_the_page(bob, project, item).status_code == 200
    assert Annotation.objects.get(item=item, annotator=bob).label_names() == ["positive"]


def test_a_late_answer_counts_while_the_item_still_needs_one_and_not_after(
    project: Project, bob: User, dora: User
) -> None:
    first = lease_next_item(project, bob)
    assert first is not None
    Lease.objects.filter(annotator=bob).update(expires_at=timezone.now() - timedelta(minutes=1))
    # Bob's lease ran out, nobody else answered: his answer is still welcome.
    assert answer_by_api(bob, project, first).status_code == 201

    second = lease_next_item(project, bob)
    assert second is not None
    Lease.objects.filter(annotator=bob).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert lease_next_item(project, dora) == second  # the expired item goes to Dora
    label(project, dora, second, "neutral")

    late = answer_by_api(bob, project, second)

    assert late.status_code == 409
    assert "others have answered it" in late.json()["detail"]
    second.refresh_from_db()
    assert second.answer_count == 1


# --- Annotators read their own answers --------------------------------------------------------


@pytest.fixture
def answered(project: Project, bob: User, dora: User) -> Item:
    """An item both Bob and Dora answered (overlap 2)."""
    project.overlap = 2
    project.save()
    item = project.items.order_by("pk").first()
    assert item is not None
    label(project, bob, item, "positive")
    label(project, dora, item, "negative")
    return item


def annotators_seen(user: User, project: Project, item: Item) -> list[str]:
    response = token_client(user).get(api(project, "annotations/"), {"item": item.pk})
    assert response.status_code == 200
    return sorted(answer["annotator"] for answer in response.json()["results"])


def test_bob_reads_only_his_own_answers_and_leads_and_reviewers_read_all(
    project: Project, answered: Item, alice: User, bob: User, dora: User, rita: User
) -> None:
    assert annotators_seen(bob, project, answered) == ["bob"]
    assert annotators_seen(dora, project, answered) == ["dora"]
    assert annotators_seen(alice, project, answered) == ["bob", "dora"]
    assert annotators_seen(rita, project, answered) == ["bob", "dora"]
    dora_answer = Annotation.objects.get(item=answered, annotator=dora)
    detail = token_client(bob).get(api(project, f"annotations/{dora_answer.pk}/"))
    assert detail.status_code == 404


def test_a_project_that_opts_in_lets_annotators_read_every_answer(
    project: Project, answered: Item, alice: User, bob: User
) -> None:
    response = token_client(alice).patch(
        f"/api/v1/projects/{project.pk}/",
        json.dumps({"annotators_see_answers": True}),
        content_type="application/json",
    )
    assert response.status_code == 200

    assert annotators_seen(bob, project, answered) == ["bob", "dora"]


# --- Export jobs and the annotator filter -----------------------------------------------------


def test_an_export_job_is_only_its_requesters(project: Project, alice: User) -> None:
    lena = make_user("lena")
    project.add_member(lena, Role.LEAD)
    job = ExportJob.objects.create(
        project=project,
        requested_by=alice,
        format="jsonl",
        status=ExportJob.Status.DONE,
        filters={"annotator": "bob"},
    )

    detail = reverse("export-job-detail", args=[job.pk])
    download = reverse("export-job-download", args=[job.pk])
    assert token_client(lena).get(detail).status_code == 404
    assert token_client(lena).get(download).status_code == 404
    assert token_client(alice).get(detail).status_code == 200


def test_the_annotator_filter_answers_alike_for_strangers_and_for_names_nobody_has(
    project: Project, alice: User, charlie: User, bob: User
) -> None:
    def export(annotator: str) -> Any:
        return token_client(alice).get(api(project, "export/"), {"annotator": annotator})

    stranger, nobody = export("charlie"), export("nobody")

    assert stranger.status_code == nobody.status_code == 400
    assert stranger.json()["annotator"] == nobody.json()["annotator"].replace("nobody", "charlie")
    assert export("bob").status_code == 200
