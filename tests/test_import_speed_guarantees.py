"""Alice imports big files fast (issue 18): the bulk path keeps every promise of the slow one.

On PostgreSQL rows are copied into a temporary table and move to the items in one statement
per batch; these stories pin what that must not change: the counts, which copy of a text
wins, the imported answers, all or nothing, and memory that does not grow with the file.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Iterator, Mapping, Sequence

import pytest
from django.contrib.auth.models import User

from labeling.importing import BATCH_SIZE, ImportFailed, import_items
from labeling.models import IMPORTED_USERNAME, Annotation, Item, Project
from labeling.parsers import Columns
from tests.conftest import make_project


def jsonl(records: Sequence[Mapping[str, object]]) -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(record).encode() + b"\n" for record in records))


def answers_of(project: Project) -> dict[str, list[str]]:
    """Each imported answer's item text and its label names."""
    answers = Annotation.objects.filter(item__project=project).prefetch_related("labels")
    return {answer.item.text: sorted(answer.label_names()) for answer in answers}


@pytest.fixture
def multi(alice: User) -> Project:
    return make_project(alice, name="Tags", multi_label=True)


def test_the_first_copy_of_a_text_wins_across_batches_and_the_counts_are_exact(
    alice: User,
) -> None:
    project = make_project(alice, items=3)  # "review number 0" .. 2 are there already
    records: list[dict[str, object]] = [{"text": "review number 1", "label": "negative"}]
    records += [{"text": f"fresh {n}", "label": "positive"} for n in range(BATCH_SIZE)]
    # The same texts again, in the next batch and with other labels and spacing.
    records += [{"text": "fresh   0", "label": "negative"}, {"text": "fresh 1"}]
    records += [{"text": "", "label": "positive"}, {"text": "late", "label": "missing"}]

    report = import_items(project, jsonl(records), "jsonl", Columns())

    assert (report.imported, report.labeled, report.duplicates, report.rejected) == (
        BATCH_SIZE,
        BATCH_SIZE,
        3,
        2,
    )
    assert project.items.count() == 3 + BATCH_SIZE
    answers = answers_of(project)
    assert answers["fresh 0"] == ["positive"]
    assert answers["fresh 1"] == ["positive"]
    assert "review number 1" not in answers  # the item that was there keeps no new answer
    assert Item.objects.get(project=project, text="fresh 0").answer_count == 1
    assert Item.objects.get(project=project, text="review number 1").answer_count == 0


def test_every_label_of_a_multi_label_row_is_stored_once(alice: User, multi: Project) -> None:
    records: list[dict[str, object]] = [
        {"text": "good and bad", "labels": ["positive", "negative", "positive"]},
        {"text": "just good", "label": "positive"},
        {"text": "no labels at all", "id": "x-1", "source": "shop"},
    ]

    report = import_items(multi, jsonl(records), "jsonl", Columns())

    assert (report.imported, report.labeled) == (3, 2)
    assert answers_of(multi) == {
        "good and bad": ["negative", "positive"],
        "just good": ["positive"],
    }
    plain = Item.objects.get(project=multi, text="no labels at all")
    assert (plain.external_id, plain.metadata, plain.answer_count) == ("x-1", {"source": "shop"}, 0)
    imported = Annotation.objects.filter(item__project=multi)
    assert {answer.annotator.username for answer in imported} == {IMPORTED_USERNAME}
    assert len({answer.client_id for answer in imported}) == 2


def test_items_get_their_own_random_order_and_a_creation_time(alice: User) -> None:
    project = make_project(alice)

    import_items(project, jsonl([{"text": f"t {n}"} for n in range(50)]), "jsonl", Columns())

    items = list(project.items.order_by("id"))
    assert [item.text for item in items] == [f"t {n}" for n in range(50)]  # the file's order
    assert len({item.random_key for item in items}) == 50
    assert all(0 <= item.random_key < 1 and item.created_at for item in items)
    assert not any(item.is_random_control for item in items)


def test_a_file_that_breaks_after_its_first_batch_stores_nothing_and_the_next_import_works(
    alice: User,
) -> None:
    project = make_project(alice)
    good = [{"text": f"kept {n}", "label": "positive"} for n in range(BATCH_SIZE + 10)]
    lines = [json.dumps(record).encode() + b"\n" for record in good]

    def cut_short() -> Iterator[bytes]:
        yield from lines
        raise ImportFailed("The upload was cut short. Nothing was imported.")

    with pytest.raises(ImportFailed):
        import_items(project, cut_short(), "jsonl", Columns())
    assert project.items.count() == 0
    assert Annotation.objects.filter(item__project=project).count() == 0

    # The same connection imports again, twice, in one transaction (the staging table is
    # reused, and empty each time).
    first = import_items(project, jsonl(good[:5]), "jsonl", Columns())
    second = import_items(project, jsonl(good), "jsonl", Columns())

    assert (first.imported, second.imported, second.duplicates) == (5, BATCH_SIZE + 5, 5)
    assert project.items.count() == BATCH_SIZE + 10


def peak_memory_of_import(project: Project, rows: int) -> int:
    data = b"".join(
        json.dumps({"text": f"row {n} of the big file", "label": "positive"}).encode() + b"\n"
        for n in range(rows)
    )
    tracemalloc.start()
    try:
        report = import_items(project, io.BytesIO(data), "jsonl", Columns())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.imported == rows
    return peak


def test_importing_eight_times_the_rows_takes_about_the_same_memory(alice: User) -> None:
    small = peak_memory_of_import(make_project(alice, name="Small"), BATCH_SIZE)
    large = peak_memory_of_import(make_project(alice, name="Large"), 8 * BATCH_SIZE)

    assert large < 2 * small, (small, large)


def test_the_bulk_insert_names_every_column_of_items_and_answers() -> None:
    """The PostgreSQL path writes its INSERT by hand: a new column must be added to it too
    (a column with a Python-side default would be left NULL, or fail the import)."""
    columns = {
        model.__name__: {field.column for field in model._meta.concrete_fields}
        for model in (Item, Annotation)
    }

    assert columns == {
        "Item": {
            "id",
            "project_id",
            "text",
            "external_id",
            "metadata",
            "content_hash",
            "answer_count",
            "random_key",
            "is_random_control",
            "excluded",
            "created_at",
            "import_job_id",
        },
        "Annotation": {
            "id",
            "item_id",
            "annotator_id",
            "skipped",
            "seconds_spent",
            "client_id",
            "suggested_labels",
            "suggestion_confidence",
            "suggestion_shown",
            "created_at",
            "updated_at",
        },
    }
