"""Every import is a batch; a big one is read by a worker while Alice watches its progress.

Alice leads "Reviews", Bob annotates it, Charlie has no access, and Dora leads a project of
her own. Files over SIFT_IMPORT_INLINE_BYTES (a kilobyte here) go to a real Celery worker
process; smaller ones are imported within the request, and are recorded as batches too.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from labeling.import_jobs import import_now, run_import_job
from labeling.importing import BATCH_SIZE, ImportOptions
from labeling.models import ImportJob, Item, Project, Role, content_hash
from modeling.models import ModelState
from tests.conftest import client_for, make_project, make_user, token_client
from tests.worker import running_worker, wait_for

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Answer

INLINE_BYTES = 1024
HTMX = {"HX-Request": "true"}
# The worker's retrain requests wait on a queue nobody reads: these stories are about imports.
NO_RETRAINS = {"SIFT_TRAINING_QUEUE": "import-stories-no-retrains"}


@pytest.fixture
def big_imports(settings: Settings, tmp_path: Path) -> Path:
    """Kept uploads under a folder of the story's own, which the worker is told too."""
    settings.SIFT_IMPORT_INLINE_BYTES = INLINE_BYTES
    settings.MEDIA_ROOT = tmp_path / "media"
    return tmp_path / "media"


@pytest.fixture
def worker_database(transactional_db: None) -> None:
    """A worker process shares the story's database: PostgreSQL (SQLite's is in memory), whose
    row locks also let a story hold an import half-way."""
    if connection.vendor != "postgresql":
        pytest.skip("a worker process shares the test database on PostgreSQL only")


def worker_env(media: Path) -> dict[str, str]:
    return {"SIFT_MEDIA_ROOT": str(media), **NO_RETRAINS}


def reviews_csv(count: int, *, first: int = 0) -> bytes:
    rows = "".join(f"review {n} of the big upload,positive\n" for n in range(first, first + count))
    return f"text,label\nwhat a day,excellent\n{rows}".encode()


def upload(client: Client, project: Project, name: str, content: bytes) -> Answer:
    file = SimpleUploadedFile(name, content)
    return client.post(reverse("project_import", args=[project.pk]), {"file": file})


def poll(client: Client, job: ImportJob) -> Answer:
    """What the page's progress asks for every second."""
    return client.get(reverse("import_job", args=[job.project_id, job.pk]), headers=HTMX)


def bytes_read(shown: Answer) -> int:
    """The value of the progress bar in the page's progress."""
    found = re.search(r'<progress max="\d+" value="(\d+)"', shown.content.decode())
    return int(found[1]) if found else 0


def kept_files(media: Path) -> list[Path]:
    folder = media / "imports"
    return sorted(folder.iterdir()) if folder.exists() else []


def listed_items(client: Client, project: Project, **params: str) -> list[int]:
    response = client.get(reverse("project_items", args=[project.pk]), params)
    assert response.status_code == 200, response.content
    return [int(pk) for pk in re.findall(r'data-item="(\d+)"', response.content.decode())]


@contextmanager
def text_held_by_another_import(project: Project, text: str) -> Iterator[None]:
    """Another transaction inserts `text` into the project and holds it, uncommitted: an
    import reaching that text waits there (PostgreSQL's unique index) until the block ends,
    and the held row is rolled back."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Item.objects.create(project=project, text=text, content_hash=content_hash(text))
                held.set()
                release.wait(timeout=120)
                transaction.set_rollback(True)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(timeout=30)
    try:
        yield
    finally:
        release.set()
        thread.join()


def test_a_big_upload_is_imported_by_a_worker_while_alice_watches(
    worker_database: None, big_imports: Path, tmp_path: Path
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    project = make_project(alice, (bob, Role.ANNOTATOR), items=20)
    client = client_for(alice)
    content = reviews_csv(BATCH_SIZE + 500)
    assert len(content) > INLINE_BYTES

    with running_worker(tmp_path / "worker.log", extra_env=worker_env(big_imports)):
        # The worker stores the first batch, then waits at a text of the second.
        with text_held_by_another_import(project, f"review {BATCH_SIZE + 100} of the big upload"):
            answered = upload(client, project, "big.csv", content)

            job = ImportJob.objects.get(project=project)
            assert answered.status_code == 302
            assert answered["Location"] == reverse("import_job", args=[project.pk, job.pk])
            assert job.status in ("pending", "running")
            assert (job.file_name, job.format, job.bytes_total) == ("big.csv", "csv", len(content))
            assert job.options["has_header"] is True
            assert not Item.objects.filter(import_job=job).exists()
            page = client.get(answered["Location"])
            assert page.status_code == 200
            assert b"<progress" in page.content

            wait_for(
                lambda: bytes_read(poll(client, job)) > 0,
                timeout=60,
                what="the worker to report the first batch read",
            )
            watching = poll(client, job)
            assert watching.status_code == 200
            assert b'data-status="running"' in watching.content
            assert 0 < bytes_read(watching) < len(content)
            assert b'hx-trigger="every 1s"' in watching.content

        wait_for(
            lambda: poll(client, job).status_code == 286,
            timeout=60,
            what="the import to finish",
        )

    finished = poll(client, job)
    report = finished.content.decode()
    assert "imported 2500, duplicates 0, rejected 1" in report
    assert "line 2: unknown label &#x27;excellent&#x27;" in report
    assert f"?batch={job.pk}" in report
    assert "hx-trigger" not in report
    job.refresh_from_db()
    assert (job.status, job.imported, job.labeled, job.rejected) == ("done", 2500, 2500, 1)
    assert job.bytes_done == job.bytes_total == len(content)
    assert job.report["reasons"][0][1] == 1
    assert Item.objects.filter(import_job=job).count() == 2500
    assert kept_files(big_imports) == []
    assert ModelState.objects.of(project).queued_at is not None  # a retrain was asked for

    batch = listed_items(client, project, batch=str(job.pk))
    assert len(batch) == 50  # one page
    assert set(batch) <= set(Item.objects.filter(import_job=job).values_list("pk", flat=True))
    items_page = client.get(reverse("project_items", args=[project.pk])).content.decode()
    assert f'<option value="{job.pk}">big.csv · ' in items_page
    assert "· 2500 items</option>" in items_page


def test_a_broken_big_file_fails_with_its_message_and_imports_nothing(
    worker_database: None, big_imports: Path, tmp_path: Path
) -> None:
    alice = make_user("alice")
    project = make_project(alice, items=20)
    client = client_for(alice)
    # A whole batch of good rows is stored before the reader reaches the open quote.
    content = reviews_csv(BATCH_SIZE + 10) + b'"an open quote,positive\n'

    with running_worker(tmp_path / "worker.log", extra_env=worker_env(big_imports)):
        answered = upload(client, project, "broken.csv", content)
        assert answered.status_code == 302
        job = ImportJob.objects.get(project=project)
        wait_for(lambda: poll(client, job).status_code == 286, timeout=60, what="the import")

    shown = poll(client, job).content.decode()
    job.refresh_from_db()
    assert job.status == "failed"
    assert "Nothing was imported" in job.error
    assert "The import of broken.csv failed" in shown
    assert job.error.split(".")[0] in shown
    assert project.items.count() == 20
    assert not Item.objects.filter(import_job=job).exists()
    assert kept_files(big_imports) == []
    assert ModelState.objects.of(project).queued_at is None


def test_a_script_sends_a_big_body_and_polls_its_job(
    worker_database: None, big_imports: Path, tmp_path: Path
) -> None:
    alice = make_user("alice")
    project = make_project(alice)
    script = token_client(alice)
    records = [{"text": f"note {n} sent by the nightly script"} for n in range(100)]
    body = b"".join(json.dumps(record).encode() + b"\n" for record in records) + b'{"id": 1}\n'
    assert len(body) > INLINE_BYTES
    url = reverse("item-list", args=[project.pk])

    with running_worker(tmp_path / "worker.log", extra_env=worker_env(big_imports)):
        accepted = script.post(url, body, content_type="application/x-ndjson")
        assert accepted.status_code == 202
        assert accepted["Location"] == accepted.json()["url"]
        assert accepted.json()["status"] in ("pending", "running")
        wait_for(
            lambda: script.get(accepted["Location"]).json()["status"] in ("done", "failed"),
            timeout=60,
            what="the import job",
        )

    job = script.get(accepted["Location"]).json()
    assert job["status"] == "done", job["error"]
    assert (job["imported"], job["duplicates"], job["rejected"]) == (100, 0, 1)
    assert [rejection["line"] for rejection in job["rejections"]] == [101]
    assert job["reasons"][0]["rows"] == 1
    assert job["bytes_done"] == job["bytes_total"] == len(body)
    assert job["file_name"] == "API upload"
    assert Item.objects.filter(import_job_id=job["id"]).count() == 100


def test_an_inline_import_is_recorded_as_a_batch_the_items_page_filters_by(
    project: Project, alice: User
) -> None:
    client = client_for(alice)
    content = b"text,label\nloved the colours,positive\nbroke in a week,negative\nmeh,unknown\n"

    answered = upload(client, project, "small.csv", content)

    assert answered.status_code == 200
    assert b"imported 2, duplicates 0, rejected 1" in answered.content
    job = ImportJob.objects.get(project=project)
    assert (job.status, job.file_name, job.requested_by) == ("done", "small.csv", alice)
    assert (job.imported, job.labeled, job.duplicates, job.rejected) == (2, 2, 0, 1)
    assert job.report["rejections"][0][0] == 4
    assert job.bytes_done == job.bytes_total == len(content)
    assert f"?batch={job.pk}".encode() in answered.content
    assert b"Past imports" in answered.content
    batch = set(Item.objects.filter(import_job=job).values_list("pk", flat=True))
    assert {item.text for item in Item.objects.filter(pk__in=batch)} == {
        "loved the colours",
        "broke in a week",
    }
    assert set(listed_items(client, project, batch=str(job.pk))) == batch
    assert listed_items(client, project, batch=str(job.pk), state="unlabeled") == []
    assert listed_items(client, project, batch=str(job.pk), q="colours") == [
        Item.objects.get(text="loved the colours").pk
    ]

    page = client.get(reverse("import_job", args=[project.pk, job.pk]))
    assert page.status_code == 200
    assert b"imported 2, duplicates 0, rejected 1" in page.content
    assert b"line 4: unknown label" in page.content


def test_a_bulk_action_over_a_batch_touches_only_its_items(project: Project, alice: User) -> None:
    client = client_for(alice)
    upload(client, project, "late.txt", b"a late review\nanother late review\n")
    job = ImportJob.objects.get(project=project)

    client.post(
        reverse("bulk_exclude", args=[project.pk]),
        {"batch": str(job.pk), "scope": "all", "confirm": "1"},
    )

    excluded = set(project.items.filter(excluded=True).values_list("text", flat=True))
    assert excluded == {"a late review", "another late review"}


def test_the_command_and_a_small_api_import_record_their_batches(
    project: Project, alice: User, tmp_path: Path
) -> None:
    path = tmp_path / "more.txt"
    path.write_bytes(b"from the command line\n")
    call_command("import_items", project.name, str(path), stdout=io.StringIO())
    answered = token_client(alice).post(
        reverse("item-list", args=[project.pk]),
        [{"text": "from a script"}],
        content_type="application/json",
    )

    by_command = ImportJob.objects.get(project=project, file_name="more.txt")
    assert (by_command.status, by_command.imported, by_command.requested_by) == ("done", 1, None)
    assert by_command.items.get().text == "from the command line"
    assert answered.status_code == 201
    by_script = ImportJob.objects.get(pk=answered.json()["job"])
    assert (by_script.requested_by, by_script.items.get().text) == (alice, "from a script")


def test_a_job_delivered_again_imports_its_file_once(
    project: Project, alice: User, big_imports: Path
) -> None:
    client = client_for(alice)
    upload(client, project, "twice.csv", reviews_csv(100))
    upload(client, project, "orphan.csv", reviews_csv(100, first=100))
    twice, orphan = ImportJob.objects.filter(project=project).order_by("pk")
    assert (twice.status, orphan.status) == ("pending", "pending")
    # A worker died reading the second: it had committed nothing, and left the job "running".
    ImportJob.objects.filter(pk=orphan.pk).update(status="running")

    for job in (twice, twice, orphan, orphan):  # the broker delivers each one again
        run_import_job(job.pk)

    finished = [
        (job.status, job.imported, job.duplicates)
        for job in ImportJob.objects.filter(project=project).order_by("pk")
    ]
    assert finished == [("done", 100, 0), ("done", 100, 0)]
    assert project.items.count() == 20 + 200
    assert kept_files(big_imports) == []


def test_only_the_projects_leads_see_its_imports(
    project: Project, alice: User, bob: User, charlie: User, dora: User
) -> None:
    upload(client_for(alice), project, "mine.txt", b"alice's own review\n")
    job = ImportJob.objects.get(project=project)
    other = make_project(dora, name="Dora's")
    api = reverse("import-job-detail", args=[job.pk])
    page = reverse("import_job", args=[project.pk, job.pk])

    assert token_client(alice).get(api).status_code == 200
    assert token_client(charlie).get(api).status_code == 404
    assert token_client(dora).get(api).status_code == 404
    assert token_client(bob).get(api).status_code == 403
    assert client_for(charlie).get(page).status_code == 404
    assert client_for(bob).get(page).status_code == 404
    # Through her own project, Dora still cannot reach it.
    assert client_for(dora).get(reverse("import_job", args=[other.pk, job.pk])).status_code == 404
    refused = client_for(dora).get(reverse("project_items", args=[other.pk]), {"batch": job.pk})
    assert refused.status_code == 400
    assert f"No import {job.pk} in this project.".encode() in refused.content
    bad = client_for(alice).get(reverse("project_items", args=[project.pk]), {"batch": "abc"})
    assert bad.status_code == 400
    assert b"batch must be a whole number" in bad.content


def test_an_inline_import_that_fails_is_recorded_failed_and_keeps_nothing(
    project: Project, alice: User
) -> None:
    items_before = project.items.count()

    answered = upload(client_for(alice), project, "header.csv", b"text,label\n")

    assert b"only a header row" in answered.content
    job = ImportJob.objects.get(project=project)
    assert (job.status, job.file_name, job.imported) == ("failed", "header.csv", 0)
    assert "only a header row" in job.error
    assert job.finished_at is not None
    assert project.items.count() == items_before


def test_an_inline_import_stopped_half_way_leaves_no_job_running(
    project: Project, alice: User
) -> None:
    items_before = project.items.count()

    def read_then_stop() -> Iterator[bytes]:
        """A file's lines, as a stream gives them, until the process goes away."""
        yield b"text\n"
        yield from (f"review {n}\n".encode() for n in range(3 * BATCH_SIZE))
        raise ConnectionResetError("the process went away")  # as a killed request would

    with pytest.raises(ConnectionResetError):
        import_now(project, alice, read_then_stop(), "cut.csv", "csv", ImportOptions())

    assert not ImportJob.objects.filter(project=project).exists()
    assert project.items.count() == items_before
