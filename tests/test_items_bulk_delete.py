"""Alice deletes items from the items page: the ticked ones, or every item a search matches.
A confirmation gives the counts first, and a file of what went (every answer too) is kept on
the page; it imports back. Rita (reviewer) and Bob (annotator) cannot delete.

Her "Topics" project has 12 sports and 12 finance texts; Bob answers some of them.
"""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.models import Annotation, Item, ItemDeletion, Project, Role
from tests.conftest import client_for, label, make_topics_project, serve, topic_of


@pytest.fixture
def topics(alice: User, bob: User, rita: User) -> Project:
    project = make_topics_project(alice, (bob, Role.ANNOTATOR), (rita, Role.REVIEWER))
    for item in project.items.order_by("id")[:4]:
        serve(project, bob, item)
        label(project, bob, item, topic_of(item))
    return project


def delete_url(project: Project) -> str:
    return f"/projects/{project.pk}/items/bulk/delete/"


def test_alice_confirms_then_deletes_the_ticked_items_and_can_download_them(
    topics: Project, alice: User
) -> None:
    client = client_for(alice)
    ticked = list(topics.items.order_by("id")[:3])
    form = {"scope": "selected", "item": [str(item.pk) for item in ticked]}

    asked = client.post(delete_url(topics), form)

    assert asked.status_code == 200
    assert b"Delete 3 items and 3 answers?" in asked.content
    assert topics.items.count() == 24  # nothing yet

    done = client.post(delete_url(topics), {**form, "confirm": "1"}, follow=True)

    assert b"Deleted 3 items and 3 answers" in done.content
    assert topics.items.count() == 21
    assert not Item.objects.filter(pk__in=[item.pk for item in ticked]).exists()
    assert Annotation.objects.filter(item__project=topics).count() == 1
    record = ItemDeletion.objects.get(project=topics)
    assert (record.items, record.answers, record.deleted_by) == (3, 3, alice)
    assert "ticked items" in record.note

    page = client.get(f"/projects/{topics.pk}/items/")
    assert b"Download them (JSONL, imports back)" in page.content
    download = client.get(f"/projects/{topics.pk}/items/deleted/{record.pk}/")
    rows = [json.loads(line) for line in b"".join(download.streaming_content).splitlines()]  # type: ignore[attr-defined]
    assert [row["text"] for row in rows] == [item.text for item in ticked]
    assert [row["label"] for row in rows] == [topic_of(item) for item in ticked]
    assert [[a["annotator"] for a in row["answers"]] for row in rows] == [["bob"]] * 3

    restored = client.post(
        f"/projects/{topics.pk}/import/",
        {"file": SimpleUploadedFile("deleted.jsonl", _lines(rows))},
    )
    assert b"imported 3, duplicates 0, rejected 0" in restored.content
    assert topics.items.count() == 24
    back = Item.objects.filter(project=topics, text=ticked[0].text).get()
    assert [a.label_names() for a in back.annotations.all()] == [[topic_of(ticked[0])]]


def _lines(rows: list[dict[str, object]]) -> bytes:
    out = io.BytesIO()
    for row in rows:
        out.write(json.dumps(row).encode() + b"\n")
    return out.getvalue()


def test_alice_deletes_every_item_her_search_matches(topics: Project, alice: User) -> None:
    client = client_for(alice)
    form = {"q": "shares", "scope": "all"}

    asked = client.post(delete_url(topics), form)
    client.post(delete_url(topics), {**form, "confirm": "1"})

    assert b"Delete 12 items" in asked.content
    assert topics.items.count() == 12
    assert all(topic_of(item) == "sports" for item in topics.items.all())


def test_only_leads_delete_or_download_what_was_deleted(
    topics: Project, alice: User, bob: User, rita: User
) -> None:
    item = topics.items.order_by("id").first()
    assert item is not None
    form = {"scope": "selected", "item": [str(item.pk)], "confirm": "1"}
    for user in (rita, bob):
        assert client_for(user).post(delete_url(topics), form).status_code == 404
    assert topics.items.count() == 24
    client_for(alice).post(delete_url(topics), form)
    record = ItemDeletion.objects.get(project=topics)

    for user in (rita, bob):
        url = f"/projects/{topics.pk}/items/deleted/{record.pk}/"
        assert client_for(user).get(url).status_code == 404


def test_nothing_ticked_deletes_nothing_and_says_why(topics: Project, alice: User) -> None:
    response = client_for(alice).post(
        delete_url(topics), {"scope": "selected", "confirm": "1"}, follow=True
    )

    assert b"Tick some items" in response.content
    assert topics.items.count() == 24
    assert not ItemDeletion.objects.exists()
