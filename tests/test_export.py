"""Alice exports her project's labels; Bob and Rita may not, Charlie never learns it exists."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.db import connection
from django.http import HttpResponseBase
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from pytest_django import DjangoAssertNumQueries, DjangoCaptureOnCommitCallbacks, Settings

from config.celery import app as celery_app
from labeling.exports.jobs import run_export_job
from labeling.exports.rows import COLUMNS
from labeling.exports.writers import write_export
from labeling.importing import import_items
from labeling.models import (
    Annotation,
    ExportJob,
    Item,
    Label,
    Project,
    Role,
    Webhook,
    content_hash,
    imported_annotator,
)
from labeling.parsers import Columns
from tests.conftest import (
    RecordingBroker,
    add_items,
    client_for,
    label,
    make_project,
    make_user,
    store_predictions_of,
)
from tests.worker import running_worker, wait_for

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def answer(item: Item, user: User, *names: str, when: datetime, skipped: bool = False) -> None:
    annotation = Annotation.objects.create(
        item=item, annotator=user, skipped=skipped, seconds_spent=2.5
    )
    annotation.labels.set(Label.objects.filter(project_id=item.project_id, name__in=names))
    Annotation.objects.filter(pk=annotation.pk).update(created_at=when, updated_at=when)


def export_url(project: Project) -> str:
    return f"/api/v1/projects/{project.pk}/export/"


def body(response: HttpResponseBase) -> bytes:
    assert response.streaming, "an export is streamed"
    return b"".join(response.streaming_content)  # type: ignore[attr-defined]


def jsonl_rows(response: HttpResponseBase) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body(response).splitlines()]


def by_text(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {row["text"]: row["label"] for row in rows}


@pytest.fixture
def items(project: Project, bob: User, rita: User, dora: User) -> list[Item]:
    """The stories' answers, the oldest at minute 1:

    0: bob, rita positive; dora negative (the last)    -> positive, 2 of 3 agree
    1: bob negative, then rita positive                -> a tie: the later answer wins
    2: rita negative, then bob positive at minute 3    -> a tie: the later answer wins
    3: bob skipped                                     -> no final label
    4: imported as neutral                             -> neutral, one answer
    5: bob negative                                    -> negative
    6..19: unanswered
    """
    project.add_member(dora, Role.ANNOTATOR)
    items = list(project.items.order_by("pk"))
    answer(items[0], bob, "positive", when=at(1))
    answer(items[0], rita, "positive", when=at(2))
    answer(items[0], dora, "negative", when=at(3))
    answer(items[1], bob, "negative", when=at(1))
    answer(items[1], rita, "positive", when=at(2))
    answer(items[2], rita, "negative", when=at(1))
    answer(items[2], bob, "positive", when=at(3))
    answer(items[3], bob, when=at(1), skipped=True)
    answer(items[4], imported_annotator(), "neutral", when=at(1))
    answer(items[5], bob, "negative", when=at(2))
    store_predictions_of(project, 3, {items[0]: ("negative", 0.8)})
    return items


def test_alice_exports_jsonl_with_the_final_label_of_each_item(
    alice: User, project: Project, items: list[Item]
) -> None:
    response = client_for(alice).get(export_url(project))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    day = timezone.localdate()
    assert response["Content-Disposition"] == f'attachment; filename="reviews-{day}.jsonl"'
    rows = jsonl_rows(response)
    assert [row["id"] for row in rows] == [item.pk for item in project.items.order_by("pk")]
    assert rows[0] == {
        "id": items[0].pk,
        "external_id": "",
        "text": "review number 0",
        "label": "positive",
        "labels": ["positive"],
        "agreement": pytest.approx(2 / 3),
        "adjudicated": False,
        "answers_count": 3,
        "prediction": "negative",
        "confidence": 0.8,
        "model_version": 3,
        "random_control": False,
        "metadata": {},
    }
    summary = [(r["label"], r["agreement"], r["answers_count"]) for r in rows[1:7]]
    assert summary == [
        ("positive", 0.5, 2),
        ("positive", 0.5, 2),
        (None, None, 0),
        ("neutral", None, 1),
        ("negative", None, 1),
        (None, None, 0),
    ]
    assert rows[1]["prediction"] is None
    assert rows[1]["model_version"] is None


def test_with_answers_each_row_lists_every_answer(
    alice: User, project: Project, items: list[Item]
) -> None:
    rows = jsonl_rows(client_for(alice).get(export_url(project), {"answers": "1"}))

    assert rows[0]["answers"] == [
        {
            "annotator": name,
            "labels": [label],
            "skipped": False,
            "seconds_spent": 2.5,
            "created_at": at(minute).isoformat(),
        }
        for name, label, minute in [
            ("bob", "positive", 1),
            ("rita", "positive", 2),
            ("dora", "negative", 3),
        ]
    ]
    assert rows[3]["answers"][0]["skipped"] is True
    assert rows[4]["answers"][0]["annotator"] == "imported"
    assert rows[6]["answers"] == []


def test_alice_exports_a_multi_label_project(alice: User, bob: User, rita: User) -> None:
    dora = make_user("dora")
    project = make_project(alice, name="Topics", multi_label=True)
    first, second, third = add_items(project, ["one", "two", "three"])
    answer(first, bob, "positive", "negative", when=at(1))
    answer(first, rita, "positive", when=at(2))
    answer(first, dora, "positive", "neutral", when=at(3))
    answer(second, bob, "negative", "positive", when=at(1))
    answer(second, rita, "negative", when=at(2))
    answer(third, bob, "neutral", when=at(1))
    answer(third, rita, "negative", when=at(2))
    answer(third, dora, "positive", when=at(3))

    client = client_for(alice)
    rows = jsonl_rows(client.get(export_url(project)))
    table = list(
        csv.DictReader(
            io.StringIO(body(client.get(export_url(project), {"format": "csv"})).decode())
        )
    )

    # A label is final when at least half of the answers chose it; agreement is exact sets.
    assert [(r["label"], r["labels"], r["agreement"]) for r in rows] == [
        ("positive", ["positive"], pytest.approx(1 / 3)),
        ("positive|negative", ["positive", "negative"], 0.5),
        (None, [], 0.0),
    ]
    assert [(r["label"], r["labels"]) for r in table] == [
        ("positive", "positive"),
        ("positive|negative", "positive|negative"),
        ("", ""),
    ]


def test_alice_exports_csv(alice: User, project: Project, items: list[Item]) -> None:
    response = client_for(alice).get(export_url(project), {"format": "csv"})

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].endswith('.csv"')
    reader = csv.reader(io.StringIO(body(response).decode()))
    header = next(reader)
    rows = [dict(zip(header, values, strict=True)) for values in reader]
    assert header == COLUMNS
    assert len(rows) == 20
    assert rows[0] == {
        "id": str(items[0].pk),
        "external_id": "",
        "text": "review number 0",
        "label": "positive",
        "labels": "positive",
        "agreement": str(2 / 3),
        "adjudicated": "False",
        "answers_count": "3",
        "prediction": "negative",
        "confidence": "0.8",
        "model_version": "3",
        "random_control": "False",
        "metadata": "{}",
    }
    assert (rows[3]["label"], rows[3]["agreement"]) == ("", "")


def test_alice_exports_parquet_with_every_answer(
    alice: User, project: Project, items: list[Item]
) -> None:
    response = client_for(alice).get(export_url(project), {"format": "parquet", "answers": "1"})

    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert response["Content-Disposition"].endswith('.parquet"')
    table = pq.read_table(io.BytesIO(body(response)))
    assert table.column_names == [*COLUMNS, "answers"]
    rows = table.to_pylist()
    assert [row["label"] for row in rows[:7]] == [
        "positive",
        "positive",
        "positive",
        None,
        "neutral",
        "negative",
        None,
    ]
    assert rows[0]["agreement"] == pytest.approx(2 / 3)
    assert rows[0]["labels"] == ["positive"]
    assert (rows[0]["prediction"], rows[0]["confidence"], rows[0]["model_version"]) == (
        "negative",
        0.8,
        3,
    )
    assert [(a["annotator"], a["labels"], a["created_at"]) for a in rows[0]["answers"]] == [
        ("bob", ["positive"], at(1)),
        ("rita", ["positive"], at(2)),
        ("dora", ["negative"], at(3)),
    ]
    assert json.loads(rows[0]["metadata"]) == {}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"since": at(3).isoformat()}, [0, 2]),
        ({"annotator": "dora"}, [0]),
        ({"annotator": "imported"}, [4]),
        ({"label": "negative"}, [5]),
        ({"min_agreement": "0.6"}, [0]),
        ({"final_only": "1"}, [0, 1, 2, 4, 5]),
        ({"label": "positive", "min_agreement": "0.5", "final_only": "true"}, [0, 1, 2]),
    ],
)
def test_filters_choose_which_items_alice_exports(
    alice: User,
    project: Project,
    items: list[Item],
    params: dict[str, str],
    expected: list[int],
) -> None:
    rows = jsonl_rows(client_for(alice).get(export_url(project), params))

    assert [row["id"] for row in rows] == [items[n].pk for n in expected]


def test_alice_exports_only_the_random_control_items(
    alice: User, project: Project, items: list[Item]
) -> None:
    Item.objects.filter(pk__in=[items[1].pk, items[7].pk]).update(is_random_control=True)

    rows = jsonl_rows(client_for(alice).get(export_url(project), {"random_control": "1"}))

    assert [(row["id"], row["label"], row["random_control"]) for row in rows] == [
        (items[1].pk, "positive", True),
        (items[7].pk, None, True),
    ]
    everything = jsonl_rows(client_for(alice).get(export_url(project), {"random_control": "0"}))
    assert sum(row["random_control"] for row in everything) == 2
    assert len(everything) == 20


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        (
            {"format": "xml"},
            "format",
            "Unknown format 'xml'; choose one of: jsonl, csv, parquet, hf.",
        ),
        ({"since": "last tuesday"}, "since", "is not an ISO 8601 time"),
        ({"annotator": "nobody"}, "annotator", "No member of this project is called 'nobody'."),
        ({"label": "spam"}, "label", "Unknown label 'spam'"),
        ({"min_agreement": "1.5"}, "min_agreement", "Give a share from 0 to 1"),
        ({"min_agreement": "high"}, "min_agreement", "Give a share from 0 to 1"),
        ({"final_only": "maybe"}, "final_only", "final_only takes 1 or 0 (or true/false"),
        ({"random_control": "some"}, "random_control", "random_control takes 1 or 0"),
        ({"answers": "all"}, "answers", "answers takes 1 or 0 (or true/false, yes/no, on/off)"),
        ({"async": "later"}, "async", "async takes 1 or 0 (or true/false, yes/no, on/off)"),
    ],
)
def test_a_bad_filter_is_refused_with_a_clear_message(
    alice: User, project: Project, params: dict[str, str], field: str, message: str
) -> None:
    response = client_for(alice).get(export_url(project), params)

    assert response.status_code == 400
    assert message in response.json()[field]


def test_only_leads_export(project: Project, bob: User, rita: User, charlie: User) -> None:
    assert client_for(bob).get(export_url(project)).status_code == 403
    assert client_for(rita).get(export_url(project)).status_code == 403
    assert client_for(charlie).get(export_url(project)).status_code == 404


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_importing_an_export_into_a_new_project_reproduces_the_labels(
    alice: User, project: Project, items: list[Item], fmt: str
) -> None:
    client = client_for(alice)
    exported = body(client.get(export_url(project), {"format": fmt}))
    copy = make_project(alice, name="Reviews copy")

    report = import_items(copy, io.BytesIO(exported), fmt, Columns())

    assert (report.imported, report.labeled, report.rejected) == (20, 5, 0)
    original = jsonl_rows(client.get(export_url(project)))
    reimported = jsonl_rows(client.get(export_url(copy)))
    assert by_text(reimported) == by_text(original)


def test_a_multi_label_export_imports_back_with_its_labels(
    alice: User, bob: User, rita: User
) -> None:
    project = make_project(alice, name="Topics", multi_label=True)
    first, second = add_items(project, ["one", "two"])
    answer(first, bob, "negative", "positive", when=at(1))
    answer(second, rita, "neutral", when=at(1))
    client = client_for(alice)
    copy = make_project(alice, name="Topics copy", multi_label=True)

    import_items(copy, io.BytesIO(body(client.get(export_url(project)))), "jsonl", Columns())

    assert by_text(jsonl_rows(client.get(export_url(copy)))) == {
        "one": "positive|negative",
        "two": "neutral",
    }


# Large exports: a job a worker writes, with progress.


def test_an_export_above_the_limit_becomes_a_job_alice_polls(
    alice: User, bob: User, charlie: User, project: Project, settings: Settings
) -> None:
    settings.SIFT_EXPORT_SYNC_LIMIT = 5
    client = client_for(alice)

    response = client.get(export_url(project), {"format": "csv", "final_only": "0"})

    assert response.status_code == 202
    job = ExportJob.objects.get()
    assert response["Location"] == f"http://testserver/api/v1/exports/{job.pk}/"
    assert response.json()["status"] == "pending"
    assert (job.format, job.rows_total, job.requested_by) == ("csv", 20, alice)
    polled = client.get(f"/api/v1/exports/{job.pk}/")
    assert polled.status_code == 200
    assert (polled.json()["rows_done"], polled.json()["download_url"]) == (0, None)
    assert client.get(f"/api/v1/exports/{job.pk}/download/").status_code == 409
    assert client_for(bob).get(f"/api/v1/exports/{job.pk}/").status_code == 403
    assert client_for(charlie).get(f"/api/v1/exports/{job.pk}/").status_code == 404


def test_the_job_counts_its_progress_chunk_by_chunk(
    alice: User,
    project: Project,
    items: list[Item],
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.MEDIA_ROOT = tmp_path
    monkeypatch.setattr("labeling.exports.rows.CHUNK_ITEMS", 8)
    job = ExportJob.objects.create(project=project, requested_by=alice, format="jsonl")
    seen: list[int] = []

    def watching(rows: Iterable[Mapping[str, Any]], *args: Any) -> int:
        def watched() -> Iterator[Mapping[str, Any]]:
            for row in rows:
                seen.append(ExportJob.objects.values_list("rows_done", flat=True).get(pk=job.pk))
                yield row

        return write_export(watched(), *args)

    monkeypatch.setattr("labeling.exports.jobs.write_export", watching)

    run_export_job(job.pk)

    job.refresh_from_db()
    assert sorted(set(seen)) == [0, 8, 16]
    assert (job.status, job.rows_done, job.rows_total) == ("done", 20, 20)
    assert len(job.file.read().splitlines()) == 20


def test_running_a_job_again_keeps_a_finished_file_and_restarts_a_broken_one(
    alice: User,
    project: Project,
    items: list[Item],
    settings: Settings,
    tmp_path: Path,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    settings.MEDIA_ROOT = tmp_path
    Webhook.objects.create(
        project=project, url="https://example.com/hook", secret="s", events=["export.ready"]
    )
    job = ExportJob.objects.create(project=project, requested_by=alice, format="jsonl")
    with django_capture_on_commit_callbacks() as first_deliveries:
        run_export_job(job.pk)
    job.refresh_from_db()
    finished = (job.file.name, job.finished_at)

    with django_capture_on_commit_callbacks() as second_deliveries:
        run_export_job(job.pk)

    job.refresh_from_db()
    assert (job.file.name, job.finished_at) == finished
    assert (len(first_deliveries), len(second_deliveries)) == (1, 0), "export.ready fires once"

    # A worker died half-way: the job still says running and a partial file is left.
    interrupted = ExportJob.objects.create(
        project=project, requested_by=alice, format="jsonl", status="running", rows_done=8
    )
    interrupted.file.save("partial.jsonl", ContentFile(b'{"id": 1'))
    partial = Path(interrupted.file.path)

    run_export_job(interrupted.pk)

    interrupted.refresh_from_db()
    assert not partial.exists()
    assert interrupted.status == "done"
    assert [json.loads(line)["id"] for line in interrupted.file.read().splitlines()] == [
        item.pk for item in project.items.order_by("pk")
    ]


def test_without_a_broker_the_job_fails_with_a_clear_error(
    alice: User,
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    broker = RecordingBroker(BrokerError("Connection refused"))
    monkeypatch.setattr(celery_app, "send_task", broker.send_task)

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(alice).get(export_url(project), {"async": "1"})

    assert response.status_code == 202
    job = ExportJob.objects.get()
    assert job.status == "failed"
    assert "task broker could not be reached" in job.error


@pytest.mark.django_db(transaction=True)
def test_a_worker_writes_a_large_export_alice_downloads(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = tmp_path / "media"
    settings.MEDIA_ROOT = media
    monkeypatch.setenv("SIFT_MEDIA_ROOT", str(media))
    alice, bob = make_user("alice"), make_user("bob")
    project = make_project(alice, (bob, Role.ANNOTATOR), items=30)
    for n, item in enumerate(project.items.order_by("pk")[:12]):
        answer(item, bob, ["positive", "negative"][n % 2], when=at(n))
    client = client_for(alice)

    with running_worker(tmp_path / "worker.log"):
        started = client.get(
            export_url(project), {"format": "csv", "async": "1", "final_only": "1"}
        )
        assert started.status_code == 202
        status_url = started["Location"]
        wait_for(
            lambda: client.get(status_url).json()["status"] in ("done", "failed"),
            timeout=60,
            what="the export job",
        )
    job = client.get(status_url).json()
    assert job["status"] == "done", job["error"]
    assert (job["rows_done"], job["rows_total"]) == (12, 12)
    download = client.get(job["download_url"])
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith('attachment; filename="reviews-')
    rows = list(csv.DictReader(io.StringIO(body(download).decode())))
    assert [row["label"] for row in rows] == ["positive", "negative"] * 6


# Size: flat memory, and one query per chunk.


def labeled_project(lead: User, name: str, count: int) -> Project:
    """A project of `count` items, each with one imported answer, inserted in bulk."""
    project = make_project(lead, name=name)
    labels = list(project.labels.all())
    importer = imported_annotator()
    texts = (f"{name} item {n}: a review of product {n % 997}" for n in range(count))
    created = Item.objects.bulk_create(
        (
            Item(project=project, text=text, content_hash=content_hash(text), answer_count=1)
            for text in texts
        ),
        batch_size=5000,
    )
    annotations = Annotation.objects.bulk_create(
        (Annotation(item=item, annotator=importer) for item in created), batch_size=5000
    )
    through = Annotation.labels.through
    through.objects.bulk_create(
        (
            through(annotation_id=annotation.pk, label_id=labels[n % 3].pk)
            for n, annotation in enumerate(annotations)
        ),
        batch_size=5000,
    )
    if connection.vendor == "postgresql":
        # Fresh statistics, as autovacuum would gather within a minute of a real bulk load.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE labeling_item, labeling_annotation, labeling_annotation_labels")
    return project


def test_the_export_reads_answers_a_chunk_at_a_time(
    alice: User, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    project = labeled_project(alice, "Five thousand", 5000)
    client = client_for(alice)
    response = client.get(export_url(project), {"answers": "1"})

    with CaptureQueriesContext(connection) as first_chunk:
        first = next(iter(response.streaming_content))  # type: ignore[attr-defined]
    # 3 chunks of items; a query per item would make thousands.
    with django_assert_max_num_queries(6):
        rest = b"".join(response.streaming_content)  # type: ignore[attr-defined]

    assert first.startswith(b'{"id": ')
    # The label set, the newest predictions, the first chunk of items and its answers: the
    # rest is read later.
    assert len(first_chunk) == 4, "the first bytes leave once the first chunk is read"
    assert (first + rest).count(b"\n") == 5000


def export_peak_memory(client: Client, project: Project) -> tuple[int, int]:
    """Stream the JSONL export block by block; returns its lines and Python's peak memory."""
    response = client.get(export_url(project))
    tracemalloc.start()
    try:
        lines = sum(block.count(b"\n") for block in response.streaming_content)  # type: ignore[attr-defined]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return lines, peak


def test_an_export_of_100000_annotations_keeps_memory_flat(alice: User) -> None:
    small = labeled_project(alice, "Ten thousand", 10_000)
    large = labeled_project(alice, "Hundred thousand", 100_000)
    client = client_for(alice)
    export_peak_memory(client, make_project(alice, name="Warm-up"))

    small_lines, small_peak = export_peak_memory(client, small)
    large_lines, large_peak = export_peak_memory(client, large)

    assert (small_lines, large_lines) == (10_000, 100_000)
    assert large_peak < 60 * 1024 * 1024
    # Ten times the rows, about the same memory: it does not grow with the export.
    assert large_peak < 2 * small_peak, (small_peak, large_peak)


def test_only_leads_open_the_export_page(project: Project, alice: User, bob: User) -> None:
    url = reverse("project_export", args=[project.pk])
    assert client_for(bob).get(url).status_code == 404
    assert client_for(alice).get(url).status_code == 200


def test_a_hugging_face_export_splits_the_evaluation_set_off_as_test(
    alice: User, bob: User
) -> None:
    project = make_project(alice, (bob, Role.ANNOTATOR), items=8)
    items = list(project.items.order_by("pk"))
    for n, item in enumerate(items[:6]):
        label(project, bob, item, ("positive", "negative", "neutral")[n % 3])
    Item.objects.filter(pk__in=[items[0].pk, items[1].pk]).update(is_random_control=True)

    response = client_for(alice).get(export_url(project), {"format": "hf"})

    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('.zip"')
    archive = zipfile.ZipFile(io.BytesIO(body(response)))
    assert sorted(archive.namelist()) == ["README.md", "labels.json", "test.jsonl", "train.jsonl"]
    names = json.loads(archive.read("labels.json"))
    assert names == ["positive", "negative", "neutral"]
    test = [json.loads(line) for line in archive.read("test.jsonl").splitlines()]
    train = [json.loads(line) for line in archive.read("train.jsonl").splitlines()]
    assert [row["id"] for row in test] == [items[0].pk, items[1].pk]  # the random controls
    assert [row["id"] for row in train] == [item.pk for item in items[2:6]]  # labeled only
    assert all(names[row["label"]] == row["label_names"][0] for row in train + test)
    assert (
        'data_files={"train": "train.jsonl", "test": "test.jsonl"}'
        in archive.read("README.md").decode()
    )

    Item.objects.filter(project=project).update(is_random_control=False)
    no_controls = zipfile.ZipFile(
        io.BytesIO(body(client_for(alice).get(export_url(project), {"format": "hf"})))
    )
    # An empty split would make load_dataset fail: it is left out, and the README says so.
    assert "test.jsonl" not in no_controls.namelist()
    assert 'data_files={"train": "train.jsonl"}' in no_controls.read("README.md").decode()
