"""Alice imports files as they come from elsewhere (issue 16): AG News's test.csv has labels
1-4 and no header, a spreadsheet says `world ` where the project says World, a PNG was renamed
.csv, and a file holds only its header. She maps values, ignores labels, and every refusal
says what is wrong with the file.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labeling.models import Annotation, Project, Role
from tests.conftest import client_for, make_project, token_client

AG_NEWS_LIKE = (
    b'"3","Wall St. Bears Claw Back","Short-sellers are seeing green again."\n'
    b'"4","New Chip Ships","A faster processor reached stores."\n'
    b'"1","Talks Resume","Leaders met again on Monday."\n'
    b'"2","Late Goal Wins It","The home side scored in the last minute."\n'
)


@pytest.fixture
def news(alice: User, bob: User) -> Project:
    project = make_project(alice, (bob, Role.ANNOTATOR), name="News")
    project.labels.all().delete()
    project.set_labels(["World", "Sports", "Business", "Sci/Tech"])
    return project


def upload(
    project: Project, user: User, content: bytes, name: str = "test.csv", **fields: Any
) -> Any:
    data = {"file": SimpleUploadedFile(name, content), **fields}
    return client_for(user).post(reverse("project_import", args=[project.pk]), data)


def imported_labels(project: Project) -> dict[str, list[str]]:
    answers = Annotation.objects.filter(item__project=project).select_related("item")
    return {answer.item.text: answer.label_names() for answer in answers}


AG_COLUMNS = {"no_header": "on", "text_column": "3", "label_column": "1"}


def test_without_a_mapping_each_unknown_value_is_told_once_with_a_count(
    news: Project, alice: User
) -> None:
    page = upload(news, alice, AG_NEWS_LIKE, **AG_COLUMNS).content.decode()

    assert "imported 0, duplicates 0, rejected 4" in page
    assert "Why rows were rejected" in page
    assert "unknown label &#x27;3&#x27;" in page
    assert "map file values to labels" in page


def test_alice_maps_the_numbers_to_labels_and_every_row_comes_in_labeled(
    news: Project, alice: User
) -> None:
    mapping = "1 = World\n2 = sports\n3=Business\n4 = Sci/Tech\n"  # case does not count

    page = upload(news, alice, AG_NEWS_LIKE, label_values=mapping, **AG_COLUMNS)

    assert "imported 4, duplicates 0, rejected 0" in page.content.decode()
    assert imported_labels(news)["The home side scored in the last minute."] == ["Sports"]
    assert imported_labels(news)["Short-sellers are seeing green again."] == ["Business"]
    assert f'href="/projects/{news.pk}/"' in page.content.decode()  # back to the project


def test_numbers_can_be_read_as_label_positions(news: Project, alice: User) -> None:
    upload(news, alice, AG_NEWS_LIKE, labels_by_position="on", **AG_COLUMNS)

    assert imported_labels(news)["Leaders met again on Monday."] == ["World"]
    assert imported_labels(news)["A faster processor reached stores."] == ["Sci/Tech"]


def test_a_mapping_to_a_label_the_project_lacks_is_refused_before_importing(
    news: Project, alice: User
) -> None:
    response = upload(news, alice, AG_NEWS_LIKE, label_values="1 = Politics", **AG_COLUMNS)

    assert response.status_code == 422
    assert "Line 1: no label &#x27;Politics&#x27;" in response.content.decode()
    assert not news.items.exists()


def test_alice_imports_the_texts_and_leaves_their_labels_behind(news: Project, alice: User) -> None:
    page = upload(news, alice, AG_NEWS_LIKE, ignore_labels="on", **AG_COLUMNS)

    assert "imported 4, duplicates 0, rejected 0" in page.content.decode()
    assert news.items.count() == 4
    assert not Annotation.objects.filter(item__project=news).exists()


def test_labels_match_whatever_their_case_and_spacing(news: Project, alice: User) -> None:
    body = b"text,label\nRain all week,  world \nCup final tonight,SPORTS\n"
    response = token_client(alice).post(
        f"/api/v1/projects/{news.pk}/items/",
        b"\n".join(
            [
                b'{"text": "Rain all week", "label": " world "}',
                b'{"text": "Cup final tonight", "label": "SPORTS"}',
            ]
        ),
        "application/x-ndjson",
    )
    assert response.status_code == 201
    assert response.json()["labeled"] == 2
    upload(news, alice, body.replace(b"Rain", b"Snow").replace(b"Cup", b"Cups"))
    assert imported_labels(news)["Snow all week"] == ["World"]


def test_a_picture_renamed_csv_is_refused_and_nothing_is_kept(news: Project, alice: User) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(range(256))

    response = upload(news, alice, png, name="items.csv")

    assert response.status_code == 422
    assert "This file is not text: it looks like a PNG image." in response.content.decode()
    assert not news.items.exists()


def test_a_file_with_nul_bytes_is_refused_as_not_text(news: Project, alice: User) -> None:
    utf16 = "text\nhello\n".encode("utf-16-le")

    response = upload(news, alice, utf16)

    assert response.status_code == 422
    assert "This file is not text" in response.content.decode()


NO_ITEMS = "The file has no items: it is empty, or has only a header row."


@pytest.mark.parametrize(
    ("content", "told"),
    [
        (b"", "The submitted file is empty."),  # Django's own check, before reading
        (b"text,label\n", NO_ITEMS),
        (b"\n\n", NO_ITEMS),
    ],
    ids=["empty", "header only", "blank lines"],
)
def test_a_file_without_items_is_told_so(
    news: Project, alice: User, content: bytes, told: str
) -> None:
    response = upload(news, alice, content)

    assert response.status_code == 422
    assert told in response.content.decode()


def test_a_project_cannot_have_both_world_and_world(news: Project, alice: User) -> None:
    other = make_project(alice, name="Other")
    other.labels.all().delete()
    with pytest.raises(ValidationError, match="whatever their case"):
        other.set_labels(["World", "world"])

    response = token_client(alice).post(
        f"/api/v1/projects/{news.pk}/labels/",
        {"name": "WORLD"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "already has a label" in response.content.decode()
