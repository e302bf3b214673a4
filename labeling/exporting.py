"""Exporting a project's items with their final labels as JSONL, CSV or Parquet.

Rows are read in keyset-paginated chunks of items, each chunk's answers fetched in one query,
so an export of any size holds one chunk in memory. JSONL and CSV are produced as a stream of
byte blocks; Parquet is written to a file in row groups. Exports above a size threshold are
written by a worker into an `ExportJob` file (see `run_export_job`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from itertools import islice
from typing import IO, TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from config.celery import enqueue
from labeling.consensus import agreement, answers_by_item, final_labels, rulings_by_item
from labeling.models import Adjudication, Annotation, ExportJob, Item, Project, Webhook
from labeling.parsers import EXPORT_COLUMNS, MULTI_LABEL_SEPARATOR
from labeling.validation import contains_nul, parse_iso_time
from labeling.webhooks import fire

if TYPE_CHECKING:
    from django.contrib.auth.models import User

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "csv", "parquet")
CONTENT_TYPES = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
CHUNK_ITEMS = 2000
PARQUET_ROW_GROUP = 10_000
# Streamed responses send blocks of about this size: large enough that the server is not
# writing a line at a time, small enough that the first bytes leave at once.
STREAM_BLOCK_BYTES = 64 * 1024
DEFAULT_SYNC_LIMIT = 200_000
RUN_EXPORT = "labeling.tasks.run_export"
COLUMNS = EXPORT_COLUMNS
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ExportRefused(ValueError):
    """A query parameter has a value the export cannot use; `field` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ExportOptions:
    """Which items to export and whether each row lists every answer."""

    since: datetime | None = None
    annotator: str = ""
    label: str = ""
    min_agreement: float | None = None
    final_only: bool = False
    random_control: bool = False
    with_answers: bool = False

    def to_json(self) -> dict[str, Any]:
        """The options as stored in `ExportJob.filters`."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "annotator": self.annotator,
            "label": self.label,
            "min_agreement": self.min_agreement,
            "final_only": self.final_only,
            "random_control": self.random_control,
            "answers": self.with_answers,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportOptions:
        since = data.get("since")
        return cls(
            since=parse_iso_time(since) if since else None,
            annotator=data.get("annotator") or "",
            label=data.get("label") or "",
            min_agreement=data.get("min_agreement"),
            final_only=bool(data.get("final_only")),
            random_control=bool(data.get("random_control")),
            with_answers=bool(data.get("answers")),
        )

    def keeps(self, row: Mapping[str, Any]) -> bool:
        """Whether a built row passes the filters that depend on the final label."""
        if self.final_only and row["label"] is None:
            return False
        if self.label and self.label not in row["labels"]:
            return False
        return self.min_agreement is None or (
            row["agreement"] is not None and row["agreement"] >= self.min_agreement
        )


@dataclass(frozen=True)
class ExportRequest:
    """An export as asked for in a query string."""

    fmt: str
    options: ExportOptions
    background: bool


def read_export_request(project: Project, params: Mapping[str, str]) -> ExportRequest:
    """Parse and check the export's query parameters; ExportRefused names the bad one."""
    fmt = (params.get("format") or "jsonl").lower()
    if fmt not in FORMATS:
        raise ExportRefused(
            "format", f"Unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}."
        )
    since = None
    if params.get("since"):
        try:
            since = parse_iso_time(params["since"])
        except ValidationError as exc:
            raise ExportRefused("since", exc.messages[0]) from exc
    for name, value in params.items():
        if contains_nul(value):
            raise ExportRefused(name, "Must not contain a NUL character.")
    annotator = params.get("annotator", "").strip()
    if annotator and not get_user_model().objects.filter(username=annotator).exists():
        raise ExportRefused("annotator", f"No annotator is called {annotator!r}.")
    label = params.get("label", "").strip()
    if label:
        names = list(project.labels.values_list("name", flat=True))
        if label not in names:
            raise ExportRefused(
                "label", f"Unknown label {label!r}; the project's labels: {', '.join(names)}."
            )
    return ExportRequest(
        fmt=fmt,
        options=ExportOptions(
            since=since,
            annotator=annotator,
            label=label,
            min_agreement=_share(params.get("min_agreement", "")),
            final_only=_flag(params, "final_only"),
            random_control=_flag(params, "random_control"),
            with_answers=_flag(params, "answers"),
        ),
        background=_flag(params, "async"),
    )


def _flag(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ExportRefused(name, "Use 1 or 0 (true or false).")


def _share(raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise ExportRefused("min_agreement", "Give a share from 0 to 1, e.g. 0.8.")
    return value


def candidate_items(project: Project, options: ExportOptions) -> QuerySet[Item]:
    """The project's items that pass the filters the database can apply by itself."""
    items = Item.objects.filter(project=project)
    if options.random_control:
        items = items.filter(is_random_control=True)
    answers = Annotation.objects.filter(item=OuterRef("pk"))
    if options.since is not None:
        items = items.filter(Exists(answers.filter(updated_at__gte=options.since)))
    if options.annotator:
        items = items.filter(Exists(answers.filter(annotator__username=options.annotator)))
    if options.final_only or options.label or options.min_agreement is not None:
        # Only an item with a non-skipped answer can have a final label.
        items = items.filter(Exists(answers.filter(skipped=False)))
    return items


def runs_in_background(item_count: int) -> bool:
    """Whether an export of this many items is too large to stream in the request."""
    return item_count > getattr(settings, "SIFT_EXPORT_SYNC_LIMIT", DEFAULT_SYNC_LIMIT)


# Reading rows: one chunk of items, and its answers, at a time.


def export_rows(
    project: Project,
    options: ExportOptions,
    *,
    progress: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one row per exported item, in id order; `progress` hears the items read so far."""
    labels = list(project.labels.values_list("pk", "name"))
    label_names = dict(labels)
    names_in_order = [name for _, name in labels]
    items = candidate_items(project, options).order_by("pk")
    fields = (
        "pk",
        "external_id",
        "text",
        "metadata",
        "queue_entry__suggested_labels",
        "queue_entry__confidence",
        "queue_entry__model_version",
        "is_random_control",
        "adjudication",
    )
    last_pk, read = 0, 0
    while chunk := list(items.filter(pk__gt=last_pk).values_list(*fields)[:CHUNK_ITEMS]):
        last_pk = chunk[-1][0]
        in_chunk = Annotation.objects.filter(item_id__in=[values[0] for values in chunk])
        answers = answers_by_item(in_chunk, label_names)
        ruled = [values[0] for values in chunk if values[-1] is not None]
        rulings = (
            rulings_by_item(Adjudication.objects.filter(item_id__in=ruled), label_names)
            if ruled
            else {}
        )
        for pk, external_id, text, metadata, suggested, confidence, version, control, _ in chunk:
            item_answers = answers.get(pk, [])
            final = final_labels(
                item_answers, project.multi_label, names_in_order, rulings.get(pk, ())
            )
            prediction = [label_names[p] for p in suggested or [] if p in label_names]
            has_prediction = bool(prediction) and confidence is not None
            row: dict[str, Any] = {
                "id": pk,
                "external_id": external_id,
                "text": text,
                "label": MULTI_LABEL_SEPARATOR.join(final) if final else None,
                "labels": final,
                "agreement": agreement(item_answers, final),
                "adjudicated": pk in rulings,
                "answers_count": sum(not answer.skipped for answer in item_answers),
                "prediction": MULTI_LABEL_SEPARATOR.join(prediction) if has_prediction else None,
                "confidence": confidence if has_prediction else None,
                "model_version": version if has_prediction else None,
                "random_control": control,
                "metadata": metadata,
            }
            if not options.keeps(row):
                continue
            if options.with_answers:
                row["answers"] = [
                    {
                        "annotator": answer.annotator,
                        "labels": answer.labels,
                        "skipped": answer.skipped,
                        "seconds_spent": answer.seconds_spent,
                        "created_at": answer.created_at,
                    }
                    for answer in item_answers
                ]
            yield row
        read += len(chunk)
        if progress is not None:
            progress(read)


# Writers.


def export_filename(project: Project, fmt: str, day: date | None = None) -> str:
    day = day or timezone.localdate()
    return f"{slugify(project.name) or 'project'}-{day:%Y-%m-%d}.{fmt}"


def jsonl_blocks(rows: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    """The rows as JSON lines, in blocks of about STREAM_BLOCK_BYTES."""
    return _blocks(json.dumps(row, ensure_ascii=False, default=_json_value) + "\n" for row in rows)


def csv_blocks(rows: Iterable[Mapping[str, Any]], with_answers: bool) -> Iterator[bytes]:
    """The rows as CSV with a header; lists joined with "|", objects as JSON."""
    columns = [*COLUMNS, "answers"] if with_answers else COLUMNS
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def lines() -> Iterator[str]:
        writer.writerow(columns)
        yield _drain(buffer)
        for row in rows:
            writer.writerow([_csv_value(row[column]) for column in columns])
            yield _drain(buffer)

    return _blocks(lines())


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


def write_export(
    rows: Iterable[Mapping[str, Any]], fmt: str, target: IO[bytes], with_answers: bool
) -> int:
    """Write the rows to a binary file in the format; returns the row count."""
    if fmt == "parquet":
        return write_parquet(rows, target, with_answers)
    counted = CountedRows(rows)
    blocks = jsonl_blocks(counted) if fmt == "jsonl" else csv_blocks(counted, with_answers)
    for block in blocks:
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


# Background exports.


def start_export_job(
    project: Project, user: User, fmt: str, options: ExportOptions, rows_total: int
) -> ExportJob:
    """Record an export job and hand it to a worker once the transaction commits."""
    job = ExportJob.objects.create(
        project=project,
        requested_by=user,
        format=fmt,
        filters=options.to_json(),
        rows_total=rows_total,
    )
    job_pk = job.pk
    transaction.on_commit(lambda: _enqueue(job_pk))
    return job


def _enqueue(job_pk: int) -> None:
    enqueue(
        RUN_EXPORT,
        job_pk,
        on_broker_down=lambda exc: ExportJob.objects.filter(
            pk=job_pk, status=ExportJob.Status.PENDING
        ).update(
            status=ExportJob.Status.FAILED,
            error=f"The task broker could not be reached, so no worker will write this "
            f"export; try again later. ({exc})",
            finished_at=timezone.now(),
        ),
    )


def run_export_job(job_pk: int) -> None:
    """Write the job's export file; a finished job is left alone, any other starts afresh."""
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().filter(pk=job_pk).first()
        if job is None or job.status == ExportJob.Status.DONE:
            return
        stale = job.file.name
        job.status = ExportJob.Status.RUNNING
        job.rows_done, job.error, job.file, job.finished_at = 0, "", None, None
        job.save(update_fields=["status", "rows_done", "error", "file", "finished_at"])
    if stale:
        job.file.storage.delete(stale)

    def progress(read: int) -> None:
        ExportJob.objects.filter(pk=job_pk).update(rows_done=read)

    try:
        project = job.project
        options = ExportOptions.from_json(job.filters)
        total = candidate_items(project, options).count()
        ExportJob.objects.filter(pk=job_pk).update(rows_total=total)
        with tempfile.TemporaryFile() as target:
            written = write_export(
                export_rows(project, options, progress=progress),
                job.format,
                target,
                options.with_answers,
            )
            target.seek(0)
            job.file.save(export_filename(project, job.format), File(target), save=False)
    except Exception as exc:
        log.exception("Export job %s failed", job_pk)
        ExportJob.objects.filter(pk=job_pk).update(
            status=ExportJob.Status.FAILED, error=str(exc), finished_at=timezone.now()
        )
        raise
    # At the end both counts are the rows in the file; while running they count items read.
    job.status = ExportJob.Status.DONE
    job.rows_done = job.rows_total = written
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "rows_done", "rows_total", "file", "finished_at"])
    fire(
        project,
        Webhook.Event.EXPORT_READY,
        {
            "project": project.pk,
            "export": job.pk,
            "format": job.format,
            "rows": written,
            "download_url": reverse("export-job-download", args=[job.pk]),
        },
    )
