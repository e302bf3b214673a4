"""Alice tidies her project without losing answers: a label nobody used goes at once, a label
with answers is merged into another first, and the project itself is deleted only after the
page counts what goes and she types its name. Bob (annotator) can do none of it.

Her project has the labels positive, negative and neutral and 20 reviews.
"""

from __future__ import annotations

from django.contrib.auth.models import User

from labeling.models import Adjudication, Annotation, Project
from labeling.services import adjudicate
from tests.conftest import client_for, label


def test_an_unused_label_is_removed_after_a_confirmation(project: Project, alice: User) -> None:
    neutral = project.labels.get(name="neutral")
    url = f"/projects/{project.pk}/labels/{neutral.pk}/remove/"

    asked = client_for(alice).get(url)
    assert b"No answer or ruling carries neutral" in asked.content
    assert project.labels.filter(name="neutral").exists()

    client_for(alice).post(url)

    assert list(project.labels.order_by("position").values_list("name", "position")) == [
        ("positive", 0),
        ("negative", 1),
    ]


def test_a_label_with_answers_is_merged_into_another_and_nothing_is_lost(
    project: Project, alice: User, bob: User, rita: User
) -> None:
    first, second, third = project.items.order_by("id")[:3]
    label(project, bob, first, "neutral")
    label(project, rita, first, "negative")
    label(project, bob, second, "neutral")
    label(project, bob, third, "positive")
    adjudicate(project, rita, second, list(project.labels.filter(name="neutral")))
    neutral, negative = project.labels.get(name="neutral"), project.labels.get(name="negative")
    url = f"/projects/{project.pk}/labels/{neutral.pk}/remove/"

    asked = client_for(alice).get(url)
    assert b"<strong>2 answers</strong> and <strong>1 ruling</strong>" in asked.content
    refused = client_for(alice).post(url, follow=True)  # no label chosen
    assert b"choose the label they should carry instead" in refused.content
    assert project.labels.filter(pk=neutral.pk).exists()

    client_for(alice).post(url, {"into": negative.pk})

    assert not project.labels.filter(name="neutral").exists()
    assert Annotation.objects.filter(item__project=project).count() == 4
    answers = {(a.item_id, a.annotator.username): a.label_names() for a in Annotation.objects.all()}
    assert answers == {
        (first.pk, "bob"): ["negative"],
        (first.pk, "rita"): ["negative"],
        (second.pk, "bob"): ["negative"],
        (third.pk, "bob"): ["positive"],
    }
    ruling = Adjudication.objects.get(item=second)
    assert [lab.name for lab in ruling.labels.all()] == ["negative"]


def test_the_last_label_stays(alice: User, project: Project) -> None:
    for name in ("neutral", "negative"):
        removed = project.labels.get(name=name)
        client_for(alice).post(f"/projects/{project.pk}/labels/{removed.pk}/remove/")
    last = project.labels.get()

    response = client_for(alice).post(
        f"/projects/{project.pk}/labels/{last.pk}/remove/", follow=True
    )

    assert b"It is the project's only label" in response.content
    assert project.labels.count() == 1


def test_alice_deletes_the_project_after_the_counts_and_its_name(
    project: Project, alice: User, bob: User
) -> None:
    label(project, bob, project.items.order_by("id")[0], "positive")
    url = f"/projects/{project.pk}/delete/"

    asked = client_for(alice).get(url)
    assert b"20 items and 1 answer" in asked.content
    assert b"the access of 3 members" in asked.content
    wrong = client_for(alice).post(url, {"name": "reviews"})
    assert wrong.status_code == 422
    assert b"Type the project&#x27;s name exactly" in wrong.content
    assert Project.objects.filter(pk=project.pk).exists()

    done = client_for(alice).post(url, {"name": project.name}, follow=True)

    assert b"Deleted Reviews: 20 items and 1 answer." in done.content
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not Annotation.objects.exists()


def test_an_annotator_or_reviewer_cannot_remove_labels_or_delete_the_project(
    project: Project, bob: User, rita: User
) -> None:
    neutral = project.labels.get(name="neutral")
    for user in (bob, rita):
        client = client_for(user)
        assert (
            client.post(f"/projects/{project.pk}/delete/", {"name": project.name}).status_code
            == 404
        )
        assert client.post(f"/projects/{project.pk}/labels/{neutral.pk}/remove/").status_code == 404
    assert Project.objects.filter(pk=project.pk).exists()
    assert project.labels.filter(pk=neutral.pk).exists()
