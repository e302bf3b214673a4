"""Alice pastes a 10 MB text where Sift expects a sentence: a clear refusal, nothing half-stored.

Alice leads the project, Bob annotates.
"""

from __future__ import annotations

import io
import json

from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import reverse

from labeling.models import Annotation, Item, Project
from tests.conftest import client_for, token_client

TEN_MB = "x" * (10 * 1024 * 1024)
# Files this big are read in the request, so its answer has the report (tests/test_import_jobs.py
# tells the background imports).
inline_imports = override_settings(SIFT_IMPORT_INLINE_BYTES=64 * 1024 * 1024)


def test_a_ten_megabyte_item_through_the_api_is_refused_with_the_limit(
    project: Project, alice: User
) -> None:
    response = token_client(alice).post(
        reverse("item-list", args=[project.pk]),
        json.dumps([{"text": "a fine review"}, {"text": TEN_MB}]),
        "application/json",
    )

    assert response.status_code == 413
    assert "larger than 10 MB" in response.json()["detail"]
    assert "JSONL" in response.json()["detail"]
    assert project.items.count() == 20


def test_a_ten_megabyte_answer_is_refused_and_nothing_is_stored(
    project: Project, bob: User
) -> None:
    item = project.items.first()
    assert item is not None

    response = token_client(bob).post(
        reverse("annotation-list", args=[project.pk]),
        json.dumps({"item": item.pk, "labels": [TEN_MB]}),
        "application/json",
    )

    assert response.status_code == 413
    assert not Annotation.objects.filter(annotator=bob).exists()


@inline_imports
def test_a_ten_megabyte_text_in_a_jsonl_import_is_rejected_with_its_line(
    project: Project, alice: User
) -> None:
    body = "\n".join(
        [json.dumps({"text": "a fine review"}), json.dumps({"text": TEN_MB}), ""]
    ).encode()

    response = token_client(alice).post(
        reverse("item-list", args=[project.pk]), body, "application/x-ndjson"
    )

    assert response.status_code == 201
    assert response.json()["rejections"] == [
        {"line": 2, "reason": "text is 10,485,760 characters; the limit is 20,000"}
    ]
    assert response.json()["imported"] == 1
    assert not Item.objects.filter(project=project, text__startswith="xxxx").exists()


@inline_imports
def test_a_ten_megabyte_field_in_an_uploaded_csv_is_rejected_with_its_line(
    project: Project, alice: User
) -> None:
    upload = io.BytesIO(b"text,label\nfine,positive\n" + TEN_MB.encode() + b",neutral\n")
    upload.name = "big.csv"

    response = client_for(alice).post(
        reverse("project_import", args=[project.pk]), {"file": upload}
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "imported 1, duplicates 0, rejected 1" in page
    assert "text is 10,485,760 characters; the limit is 20,000" in page
    assert project.items.count() == 21
