"""Writing export rows as JSONL, CSV or Parquet.

JSONL and CSV are produced as a stream of byte blocks, so a response can send them as they are
made; Parquet is written to a file in row groups.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from itertools import islice
from typing import IO, Any

from django.utils import timezone
from django.utils.text import slugify

from labeling.csv_safety import SafeCsvWriter
from labeling.exports.rows import COLUMNS
from labeling.models import Project
from labeling.parsers import MULTI_LABEL_SEPARATOR

CONTENT_TYPES = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "hf": "application/zip",
}
# Formats written whole to a file before they are sent (their index or footer comes last).
WHOLE_FILE_FORMATS = ("parquet", "hf")
EXTENSIONS = {"hf": "zip"}
HF_README = """# {name}: exported by Sift

    import json
    from datasets import load_dataset
    data = load_dataset("json", data_files={files})
    names = json.load(open("labels.json"))  # label i is names[i]

train.jsonl: every item with a final label outside the evaluation set. test.jsonl: the
random-control items with a final label, a uniform sample the model never chose (the
evaluation set Sift reports). A split with no item is left out (`datasets` refuses an empty
one). Each line: id, text, label ({kind}), label_names.
"""
PARQUET_ROW_GROUP = 10_000
# Streamed responses send blocks of about this size: large enough that the server is not
# writing a line at a time, small enough that the first bytes leave at once.
STREAM_BLOCK_BYTES = 64 * 1024


def export_filename(project: Project, fmt: str, day: date | None = None) -> str:
    day = day or timezone.localdate()
    return f"{slugify(project.name) or 'project'}-{day:%Y-%m-%d}.{EXTENSIONS.get(fmt, fmt)}"


def jsonl_blocks(rows: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    """The rows as JSON lines, in blocks of about STREAM_BLOCK_BYTES."""
    return _blocks(json.dumps(row, ensure_ascii=False, default=_json_value) + "\n" for row in rows)


def csv_blocks(rows: Iterable[Mapping[str, Any]], with_answers: bool) -> Iterator[bytes]:
    """The rows as CSV with a header; lists joined with "|", objects as JSON, text that a
    spreadsheet would run as a formula behind a `'` (labeling/csv_safety.py)."""
    columns = [*COLUMNS, "answers"] if with_answers else COLUMNS
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)

    def lines() -> Iterator[str]:
        writer.writerow(columns)
        yield _drain(buffer)
        for row in rows:
            writer.writerow([_csv_value(row[column]) for column in columns])
            yield _drain(buffer)

    return _blocks(lines())


def text_blocks(rows: Iterable[Mapping[str, Any]], fmt: str, with_answers: bool) -> Iterator[bytes]:
    """The rows as streamed blocks of a text format: CSV, or JSONL."""
    return csv_blocks(rows, with_answers) if fmt == "csv" else jsonl_blocks(rows)


def write_parquet(
    rows: Iterable[Mapping[str, Any]], target: str | IO[bytes], with_answers: bool
) -> int:
    """Write the rows as Parquet in row groups of PARQUET_ROW_GROUP; returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = pa.list_(pa.string())
    fields = [
        ("id", pa.int64()),
        ("external_id", pa.string()),
        ("text", pa.string()),
        ("label", pa.string()),
        ("labels", labels),
        ("agreement", pa.float64()),
        ("adjudicated", pa.bool_()),
        ("answers_count", pa.int32()),
        ("prediction", pa.string()),
        ("confidence", pa.float64()),
        ("model_version", pa.int64()),
        ("random_control", pa.bool_()),
        ("metadata", pa.string()),  # JSON: metadata keys differ from item to item
    ]
    if with_answers:
        answer = pa.struct(
            [
                ("annotator", pa.string()),
                ("labels", labels),
                ("skipped", pa.bool_()),
                ("seconds_spent", pa.float64()),
                ("created_at", pa.timestamp("us", tz="UTC")),
            ]
        )
        fields.append(("answers", pa.list_(answer)))
    schema = pa.schema(fields)
    written = 0
    with pq.ParquetWriter(target, schema) as writer:
        for group in _batches(rows, PARQUET_ROW_GROUP):
            records = [{**row, "metadata": json.dumps(row["metadata"])} for row in group]
            writer.write_table(
                pa.Table.from_pylist(records, schema=schema), row_group_size=PARQUET_ROW_GROUP
            )
            written += len(group)
    return written


def write_hf_dataset(
    rows: Iterable[Mapping[str, Any]], target: str | IO[bytes], project: Project
) -> int:
    """A zip that Hugging Face `datasets` loads as is: train.jsonl, test.jsonl (the
    random-control items: the evaluation set), labels.json and a README; returns the rows
    written (items without a final label are left out)."""
    names = list(project.labels.order_by("position").values_list("name", flat=True))
    index = {name: i for i, name in enumerate(names)}
    written = 0
    with (
        tempfile.TemporaryFile() as train,
        tempfile.TemporaryFile() as test,
        zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        for row in rows:
            if not row["labels"]:
                continue
            ids = [index[name] for name in row["labels"]]
            record = {
                "id": row["id"],
                "text": row["text"],
                "label": ids if project.multi_label else ids[0],
                "label_names": row["labels"],
            }
            split = test if row["random_control"] else train
            split.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
            written += 1
        files: dict[str, str] = {}
        for name, split in (("train", train), ("test", test)):
            if not split.tell():
                continue  # load_dataset fails on an empty split ("corresponds to no data")
            split.seek(0)
            with archive.open(f"{name}.jsonl", "w") as entry:
                shutil.copyfileobj(split, entry)
            files[name] = f"{name}.jsonl"
        archive.writestr("labels.json", json.dumps(names, ensure_ascii=False, indent=1))
        kind = "a list of label indices" if project.multi_label else "the label's index"
        readme = HF_README.format(name=project.name, files=json.dumps(files), kind=kind)
        archive.writestr("README.md", readme)
    return written


def write_export(
    rows: Iterable[Mapping[str, Any]],
    fmt: str,
    target: IO[bytes],
    with_answers: bool,
    project: Project,
) -> int:
    """Write the rows to a binary file in the format; returns the row count."""
    if fmt == "parquet":
        return write_parquet(rows, target, with_answers)
    if fmt == "hf":
        return write_hf_dataset(rows, target, project)
    counted = CountedRows(rows)
    for block in text_blocks(counted, fmt, with_answers):
        target.write(block)
    return counted.count


class CountedRows:
    """Passes rows through and counts them."""

    def __init__(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self._rows = rows
        self.count = 0

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        for row in self._rows:
            self.count += 1
            yield row


def _blocks(pieces: Iterable[str]) -> Iterator[bytes]:
    parts: list[str] = []
    size = 0
    for piece in pieces:
        parts.append(piece)
        size += len(piece)
        if size >= STREAM_BLOCK_BYTES:
            yield "".join(parts).encode("utf-8")
            parts, size = [], 0
    if parts:
        yield "".join(parts).encode("utf-8")


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _batches(rows: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return MULTI_LABEL_SEPARATOR.join(value)
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=_json_value)
    return value
