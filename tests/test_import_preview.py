"""Alice previews a file before importing it: she sees the file's columns and its first rows as
Sift would read them, picks the columns, and imports the file she previewed without sending it
again. Nothing is written until she imports."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from labeling.models import Item, Project
from tests.conftest import client_for
from tests.test_import_mapping import news as news  # the fixture

HEADLINES = (
    b"category,headline,body\n"
    b"3,Wall St. Bears Claw Back,Short-sellers are seeing green again.\n"
    b"4,New Chip Ships,A faster processor reached stores.\n"
    b"7,Talks Resume,Leaders met again on Monday.\n"
)


def post(client: Client, project: Project, **fields: object) -> tuple[int, str]:
    response = client.post(f"/projects/{project.pk}/import/", fields)
    return response.status_code, response.content.decode()


def staged_token(page: str) -> str:
    found = re.search(r'name="staged" value="([0-9a-f]{32})"', page)
    assert found, "the page carries the previewed file"
    return found.group(1)


def test_a_preview_lists_the_columns_and_says_what_is_missing(news: Project, alice: User) -> None:
    status, page = post(
        client_for(alice),
        news,
        file=SimpleUploadedFile("news.csv", HEADLINES),
        preview="1",
    )

    assert status == 200
    assert "No &#x27;text&#x27; column" in page
    assert "<code>category</code>, <code>headline</code>, <code>body</code>" in page
    assert not Item.objects.filter(project=news).exists()


def test_alice_picks_columns_previews_and_imports_the_previewed_file(
    news: Project, alice: User
) -> None:
    client = client_for(alice)
    choices = {
        "text_column": "headline,body",
        "label_column": "category",
        "labels_by_position": "on",
    }
    status, page = post(
        client, news, file=SimpleUploadedFile("news.csv", HEADLINES), preview="1", **choices
    )

    assert status == 200
    assert "Wall St. Bears Claw Back Short-sellers are seeing green again." in page
    assert "3 → <strong>Business</strong>" in page
    assert '7 → <span class="errors">no such label</span>' in page
    assert not Item.objects.filter(project=news).exists()

    status, page = post(client, news, staged=staged_token(page), staged_name="news.csv", **choices)

    assert status == 200
    assert "imported 2, duplicates 0, rejected 1" in page
    assert Item.objects.filter(project=news).count() == 2


def test_a_previewed_file_is_imported_once_and_only_by_its_lead(
    news: Project, alice: User, dora: User
) -> None:
    news.add_member(dora, "lead")
    status, page = post(
        client_for(alice),
        news,
        file=SimpleUploadedFile("news.csv", HEADLINES),
        preview="1",
        text_column="headline",
    )
    token = staged_token(page)

    status, page = post(client_for(dora), news, staged=token, staged_name="news.csv")
    assert status == 422
    assert "The previewed file is no longer kept" in page

    status, page = post(
        client_for(alice), news, staged=token, staged_name="news.csv", text_column="headline"
    )
    assert "imported 3" in page
    status, page = post(
        client_for(alice), news, staged=token, staged_name="news.csv", text_column="headline"
    )
    assert status == 422
    assert "The previewed file is no longer kept" in page
    assert Item.objects.filter(project=news).count() == 3


def test_a_made_up_token_opens_nothing(news: Project, alice: User) -> None:
    for token in ["../../settings", "0" * 32, "x"]:
        status, page = post(client_for(alice), news, staged=token, staged_name="a.csv")
        assert status == 422, token
        assert "The previewed file is no longer kept" in page, token
    assert not Item.objects.filter(project=news).exists()
