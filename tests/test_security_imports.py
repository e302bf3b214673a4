"""Alice imports items as the penetration test did (issue 15): an upload cut short, two imports
of the same texts at once, files over the limit and rows that used to lose the whole file. Each
import keeps all of a good file or nothing of a broken one, and says which.

Alice leads the project and imports with her scripts and on the Import page.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.files.uploadhandler import FileUploadHandler
from django.db import connection
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from labeling.importing import BATCH_SIZE, ImportReport, import_items
from labeling.models import IMPORTED_USERNAME, Annotation, ApiToken, Item, Project
from labeling.parsers import Columns
from tests.conftest import add_items, client_for, make_project, token_client
from tests.servers import running_gunicorn, wait_for
from tests.worker import env_for_processes


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def items_url(project: Project) -> str:
    return reverse("item-list", args=[project.pk])


def import_page(project: Project) -> str:
    return reverse("project_import", args=[project.pk])


def upload_as(
    user: User, project: Project, name: str, content: bytes, **fields: str
) -> HttpResponse:
    """`user` sends a file from the Import page with its CSRF token, as a browser does."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.get(import_page(project))
    token = browser.cookies[django_settings.CSRF_COOKIE_NAME].value
    upload = io.BytesIO(content)
    upload.name = name
    form = {"csrfmiddlewaretoken": token, "file": upload, **fields}
    return browser.post(import_page(project), form)  # type: ignore[return-value]


# --- Finding 3: an interrupted import kept part of the file ----------------------------------
#
# A JSONL body that declared 20,000 lines but stopped after 10,179 (the client closed) got a 201
# and 10,179 items: a short body read like a clean end of file.


@pytest.fixture
def web(tmp_path: Path, transactional_db: None) -> Iterator[str]:
    if connection.vendor != "postgresql":
        pytest.skip("production runs gunicorn on PostgreSQL")
    with running_gunicorn(env_for_processes(), tmp_path / "gunicorn.log", workers=1) as url:
        yield url


def send_cut_short(
    base_url: str, path: str, headers: dict[str, str], body: bytes, sent: int
) -> tuple[int, bytes]:
    """POST `body` with its full Content-Length, send only `sent` bytes of it, then stop
    writing as a client that lost its connection does; the server's answer."""
    address = urlsplit(base_url)
    assert address.hostname
    assert address.port
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {address.hostname}:{address.port}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    with socket.create_connection((address.hostname, address.port), timeout=60) as conn:
        conn.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + body[:sent])
        conn.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(conn)
        response.begin()
        return response.status, response.read()


def test_a_jsonl_import_cut_short_stores_nothing_and_says_so(alice: User, web: str) -> None:
    project = make_project(alice)
    _, key = ApiToken.issue(alice, "import script")
    lines = [json.dumps({"text": f"review {n:05}"}).encode() + b"\n" for n in range(20_000)]
    body = b"".join(lines)

    status, answer = send_cut_short(
        web,
        items_url(project),
        {"Authorization": f"Token {key}", "Content-Type": "application/x-ndjson"},
        body,
        sent=len(b"".join(lines[:10_179])),
    )

    assert status == 400
    detail = json.loads(answer)["detail"]
    assert "cut short" in detail
    assert "Nothing was imported" in detail
    assert project.items.count() == 0


def test_an_upload_cut_short_on_the_import_page_stores_nothing(alice: User, web: str) -> None:
    project = make_project(alice)
    browser = requests.Session()
    browser.cookies.set(
        django_settings.SESSION_COOKIE_NAME,
        client_for(alice).cookies[django_settings.SESSION_COOKIE_NAME].value,
    )
    page = browser.get(f"{web}{import_page(project)}")
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found
    content = b"".join(f"review {n:05}\n".encode() for n in range(5_000))
    boundary = "sift-cut-short"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
            f"{found[1]}\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="reviews.txt"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )

    status, answer = send_cut_short(
        web,
        import_page(project),
        {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Cookie": "; ".join(f"{name}={value}" for name, value in browser.cookies.items()),
        },
        body,
        sent=len(body) - len(content) // 2,
    )

    assert status == 422
    assert "The upload was cut short" in answer.decode()
    assert "Nothing was imported" in answer.decode()
    assert project.items.count() == 0


# --- Finding 4: two imports of overlapping texts at once -------------------------------------
#
# Two scripts imported files that share texts at the same moment: one of them got a 500
# (IntegrityError on unique_item_text) and lost every row; with crossed orders, a deadlock.


def paused_file(
    lines: list[bytes], at: int, paused: threading.Event, go: threading.Event
) -> Iterator[bytes]:
    """The file's lines, stopping after `at` of them until `go`, as a slow upload does."""
    yield from lines[:at]
    paused.set()
    assert go.wait(timeout=60)
    yield from lines[at:]


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
        return bool(row and row[0])


@pytest.mark.django_db(transaction=True)
def test_two_imports_of_overlapping_texts_at_once_both_succeed_each_text_stored_once(
    alice: User,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite takes its write lock at BEGIN; imports cannot overlap there")
    project = make_project(alice)
    early = [f"shared early {n}" for n in range(BATCH_SIZE)]
    late = [f"shared late {n}" for n in range(BATCH_SIZE - 1)]

    def lines(texts: list[str], label: str) -> list[bytes]:
        return [json.dumps({"text": text, "label": label}).encode() + b"\n" for text in texts]

    # The two files share every text but one each, in crossed order.
    first = lines([*early, *late, "only in the first"], "positive")
    second = lines([*late, "only in the second", *early], "negative")
    paused, go = threading.Event(), threading.Event()
    reports: dict[str, ImportReport] = {}
    errors: dict[str, BaseException] = {}

    def run(name: str, stream: Any) -> None:
        try:
            reports[name] = import_items(project, stream, "jsonl", Columns())
        except BaseException as exc:
            errors[name] = exc
        finally:
            connection.close()

    first_import = threading.Thread(
        target=run, args=("first", paused_file(first, BATCH_SIZE, paused, go))
    )
    first_import.start()
    # The first import has stored its first batch and waits for the rest of its upload.
    assert paused.wait(timeout=60)
    second_import = threading.Thread(target=run, args=("second", iter(second)))
    second_import.start()
    try:
        wait_for(_waiting_on_a_lock, 30, "the second import to wait for the first")
    finally:
        go.set()
    first_import.join(timeout=60)
    second_import.join(timeout=60)

    assert errors == {}
    assert (reports["first"].imported, reports["first"].duplicates) == (4000, 0)
    assert (reports["second"].imported, reports["second"].duplicates) == (1, 3999)
    assert project.items.count() == 4001
    assert project.items.values("content_hash").distinct().count() == 4001
    labels = dict(
        Annotation.objects.filter(item__project=project).values_list("item__text", "labels__name")
    )
    assert len(labels) == 4001
    assert labels["only in the second"] == "negative"
    assert {labels[text] for text in [*early, *late, "only in the first"]} == {"positive"}


# --- Finding 9: limits not enforced ----------------------------------------------------------
#
# The API took a 3 MB body under a 2 MB limit; the Import page stored the whole upload before
# refusing it and called a 2,000,000-byte limit "1 MB".

LIMIT = 2_000_000
THREE_MB = 3 * 1024 * 1024


def jsonl_of_size(size: int) -> bytes:
    count = size // 30 + 1
    return jsonl([{"text": f"review number {n:012}"} for n in range(count)])


def test_an_api_import_over_the_limit_is_refused_and_stores_nothing(
    alice: User, settings: Settings
) -> None:
    settings.SIFT_MAX_UPLOAD_BYTES = LIMIT
    project = make_project(alice)
    client = token_client(alice)
    body = jsonl_of_size(THREE_MB)
    records = [json.loads(line) for line in body.splitlines()]

    streamed = client.post(items_url(project), body, "application/x-ndjson")
    listed = client.post(items_url(project), json.dumps(records), "application/json")

    for response in (streamed, listed):
        assert response.status_code == 413
        assert response.json() == {
            "detail": "The upload is larger than the limit of 2,000,000 bytes (1.9\xa0MB). "
            "Nothing was imported."
        }
    assert project.items.count() == 0


def test_an_api_import_at_the_limit_is_imported(alice: User, settings: Settings) -> None:
    body = jsonl_of_size(100_000)
    settings.SIFT_MAX_UPLOAD_BYTES = len(body)
    project = make_project(alice)

    response = token_client(alice).post(items_url(project), body, "application/x-ndjson")

    assert response.status_code == 201
    assert project.items.count() == response.json()["imported"] == len(body.splitlines())


class DiskWitness(FileUploadHandler):
    """Sees every byte of an upload that reaches Django's own handlers, which store it."""

    received: list[int] = []

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received.append(len(raw_data))
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


@pytest.fixture
def disk_witness(settings: Settings) -> list[int]:
    DiskWitness.received = []
    settings.FILE_UPLOAD_HANDLERS = [
        f"{__name__}.DiskWitness",
        *settings.FILE_UPLOAD_HANDLERS,
    ]
    return DiskWitness.received


def test_the_import_page_refuses_an_oversized_upload_before_storing_it(
    alice: User, settings: Settings, disk_witness: list[int]
) -> None:
    settings.SIFT_MAX_UPLOAD_BYTES = LIMIT
    project = make_project(alice)

    response = upload_as(alice, project, "reviews.jsonl", jsonl_of_size(THREE_MB))

    assert response.status_code == 422
    page = response.content.decode()
    assert "The upload is larger than the limit of 2,000,000 bytes (1.9\xa0MB)." in page
    assert "This field is required" not in page
    assert 0 < sum(disk_witness) <= LIMIT
    assert project.items.count() == 0


def test_an_upload_far_over_the_limit_is_refused_without_reading_it(
    alice: User, settings: Settings, disk_witness: list[int]
) -> None:
    settings.SIFT_MAX_UPLOAD_BYTES = 1000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    project = make_project(alice)

    response = upload_as(alice, project, "reviews.jsonl", jsonl_of_size(100_000))

    assert response.status_code == 422
    assert "The upload is larger than the limit of 1,000 bytes." in response.content.decode()
    assert disk_witness == []
    assert project.items.count() == 0


def test_a_file_at_the_limit_is_imported_on_the_import_page(
    alice: User, settings: Settings
) -> None:
    content = jsonl_of_size(100_000)
    settings.SIFT_MAX_UPLOAD_BYTES = len(content)
    project = make_project(alice)

    response = upload_as(alice, project, "reviews.jsonl", content)

    assert response.status_code == 200
    assert project.items.count() == len(content.splitlines())


# --- Finding 8 (imports): rows that lost the whole file -------------------------------------
#
# A text column named "²" was a 500 (it passes isdigit, int() refuses it); a NUL in an id lost
# the whole import. (JSON nested too deep: tests/test_security_api.py.)


@pytest.mark.parametrize("no_header", [False, True])
def test_a_column_named_superscript_two_is_a_clear_error(alice: User, no_header: bool) -> None:
    project = make_project(alice)
    options = {"text_column": "\u00b2", **({"no_header": "on"} if no_header else {})}

    response = upload_as(alice, project, "reviews.csv", b"text,label\nfine,positive\n", **options)

    assert response.status_code == 422
    page = response.content.decode()
    if no_header:
        assert "Column &#x27;²&#x27;: without a header, columns are given by position" in page
    else:
        assert "Column &#x27;²&#x27; not found; the header has: text, label." in page
    assert project.items.count() == 0


def test_a_nul_in_an_id_rejects_only_that_row(alice: User) -> None:
    project = make_project(alice)
    body = jsonl(
        [
            {"text": "fine film", "id": "r-1"},
            {"text": "sneaky film", "id": "r-\x002"},
            {"text": "dull film", "id": "r-3"},
        ]
    )

    response = token_client(alice).post(items_url(project), body, "application/x-ndjson")

    assert response.status_code == 201
    assert response.json()["rejections"] == [{"line": 2, "reason": "contains a NUL character"}]
    assert set(project.items.values_list("external_id", flat=True)) == {"r-1", "r-3"}


# --- A Sift CSV export imports back as it was ------------------------------------------------
#
# The export puts a ' before a cell a spreadsheet would run as a formula (labeling/csv_safety.py);
# importing that CSV kept the quote, so "=1+1" came back as "'=1+1".


def test_a_csv_export_imports_back_without_the_spreadsheet_quotes(alice: User) -> None:
    project = make_project(alice)
    texts = [
        "=1+1 is two",
        "+44 20 7946 0000 called",
        "-5 stars",
        "@sift rocks",
        "'quoted' film",
        "'=already quoted",
    ]
    add_items(project, texts)
    for item in project.items.all():
        item.external_id = f"={item.pk}" if item.text.startswith("=") else f"r-{item.pk}"
        item.save()
    first = project.items.get(text="=1+1 is two")
    Annotation.objects.create(item=first, annotator=alice).labels.add(
        project.labels.get(name="negative")
    )
    client = client_for(alice)
    exported = client.get(f"/api/v1/projects/{project.pk}/export/", {"format": "csv"})
    csv_bytes = b"".join(exported.streaming_content)  # type: ignore[attr-defined]
    assert b"'=1+1 is two" in csv_bytes
    copy = make_project(alice, name="Reviews copy")

    response = upload_as(alice, copy, "reviews.csv", csv_bytes)

    assert response.status_code == 200
    assert "imported 6, duplicates 0, rejected 0" in response.content.decode()
    assert set(copy.items.values_list("text", "external_id")) == set(
        project.items.values_list("text", "external_id")
    )
    imported = copy.items.get(text="=1+1 is two").annotations.get()
    assert imported.annotator.username == IMPORTED_USERNAME
    assert imported.label_names() == ["negative"]


def test_only_the_quote_the_export_adds_is_taken_off(alice: User) -> None:
    project = make_project(alice)
    content = b"text\n'=SUM(A1)\n'@home\n''=two quotes\n'plain quote\n'\n"

    response = upload_as(alice, project, "reviews.csv", content)

    assert response.status_code == 200
    assert set(Item.objects.filter(project=project).values_list("text", flat=True)) == {
        "=SUM(A1)",
        "@home",
        "'=two quotes",  # a text "'=two quotes" exported as "''=two quotes"
        "'plain quote",
        "'",
    }
