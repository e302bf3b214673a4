"""Importing item files into a project: de-duplicated, validated, all or nothing."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from labeling.models import (
    Annotation,
    ImportJob,
    Item,
    Label,
    Project,
    content_hash,
    imported_annotator,
    normalize_text,
)
from labeling.parsers import Columns, ParseError, Rejected, Row, read_rows
from labeling.validation import contains_nul, label_key

if TYPE_CHECKING:
    from django.contrib.auth.models import User

BATCH_SIZE = 2000
MAX_REPORTED_REJECTIONS = 200
# Reasons an import's record keeps (a text's length makes a reason of its own, so there may
# be thousands).
MAX_KEPT_REASONS = 20


class ImportFailed(Exception):
    """The file could not be imported; nothing from it was kept."""


@dataclass
class ImportReport:
    imported: int = 0
    labeled: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[Rejected] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        return f"imported {self.imported}, duplicates {self.duplicates}, rejected {self.rejected}"

    def most_common_reasons(self, n: int = 5) -> list[tuple[str, int]]:
        """Why rows were rejected, the most frequent reason first, with how many rows."""
        return self.reasons.most_common(n)

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] += 1
        if len(self.rejections) < MAX_REPORTED_REJECTIONS:
            self.rejections.append(Rejected(line, reason))

    def details_json(self) -> dict[str, Any]:
        """The first rejections and the most common reasons, as kept in `ImportJob.report`."""
        return {
            "rejections": [[r.line, r.reason] for r in self.rejections],
            "reasons": [[reason, n] for reason, n in self.reasons.most_common(MAX_KEPT_REASONS)],
        }

    @classmethod
    def of_job(cls, job: ImportJob) -> ImportReport:
        """The report of a finished import, rebuilt from its record."""
        details = job.report or {}
        rejections = details.get("rejections", [])
        return cls(
            imported=job.imported,
            labeled=job.labeled,
            duplicates=job.duplicates,
            rejected=job.rejected,
            rejections=[Rejected(int(line), str(why)) for line, why in rejections],
            reasons=Counter({str(why): int(n) for why, n in details.get("reasons", [])}),
        )


@dataclass(frozen=True)
class LabelRules:
    """How the file's label values become the project's labels.

    Values match label names whatever their case and spacing (`world ` is `World`).
    `values` maps file values to label names first (`1` -> `World`); `by_position` reads
    whole numbers as positions in the project's label order, counting from 1; `ignore`
    imports the texts alone.
    """

    values: Mapping[str, str] = field(default_factory=dict)
    by_position: bool = False
    ignore: bool = False


@dataclass(frozen=True)
class ImportOptions:
    """How a file is read: its columns and label rules, as kept in `ImportJob.options`."""

    columns: Columns = field(default_factory=Columns)
    rules: LabelRules = field(default_factory=LabelRules)

    def to_json(self) -> dict[str, Any]:
        return {
            "text_columns": list(self.columns.text),
            "label_column": self.columns.label,
            "id_column": self.columns.external_id,
            "has_header": self.columns.has_header,
            "label_values": dict(self.rules.values),
            "labels_by_position": self.rules.by_position,
            "ignore_labels": self.rules.ignore,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImportOptions:
        return cls(
            Columns(
                text=[str(name) for name in data.get("text_columns") or []],
                label=data.get("label_column"),
                external_id=data.get("id_column"),
                has_header=bool(data.get("has_header", True)),
            ),
            LabelRules(
                values={str(k): str(v) for k, v in (data.get("label_values") or {}).items()},
                by_position=bool(data.get("labels_by_position")),
                ignore=bool(data.get("ignore_labels")),
            ),
        )


def import_items(
    project: Project,
    stream: Iterable[bytes],
    fmt: str,
    columns: Columns,
    rules: LabelRules | None = None,
    *,
    job: ImportJob | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import every valid record of the file into the project.

    Invalid records are rejected with their line number and reason; duplicate texts (already
    in the project or earlier in the file) are counted and skipped. Labels in the file become
    answers by the "imported" pseudo-annotator. A problem with the file as a whole raises
    ImportFailed and leaves the project exactly as it was.

    Imports into one project run one at a time: two at once, sharing texts, would each find
    the other's rows missing and then collide on them (or deadlock) when inserting.

    The items created belong to `job`'s batch; `progress` hears the bytes read so far, once
    a batch.
    """
    report = ImportReport()
    counted = _CountedStream(stream)
    ordered = list(project.labels.order_by("position"))
    labels = {label.name: label for label in ordered}
    matcher = _LabelMatcher(ordered, rules or LabelRules())
    importer = imported_annotator()
    try:
        with transaction.atomic():
            # Waits here while another import into the project runs, until it commits.
            Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
            valid = _validated(read_rows(counted, fmt, columns), project, matcher, report)
            for batch in _batches(valid, BATCH_SIZE):
                _store_batch(project, batch, labels, importer, report, job)
                if progress is not None:
                    progress(counted.bytes_read)
            if not (report.imported or report.duplicates or report.rejected):
                raise ParseError("The file has no items: it is empty, or has only a header row.")
    except ParseError as exc:
        raise ImportFailed(f"{exc} Nothing was imported.") from exc
    return report


class _CountedStream:
    """The file's lines, counting the bytes read."""

    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream
        self.bytes_read = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            self.bytes_read += len(chunk)
            yield chunk


class _LabelMatcher:
    """File label values to the project's label names (see LabelRules)."""

    def __init__(self, ordered: list[Label], rules: LabelRules) -> None:
        self.rules = rules
        self.names = [label.name for label in ordered]
        self.by_key = {label_key(label.name): label.name for label in ordered}
        self.values = {label_key(value): name for value, name in rules.values.items()}

    def name_of(self, value: str) -> str | None:
        key = label_key(value)
        if key in self.values:
            key = label_key(self.values[key])
        elif self.rules.by_position and key.isdigit() and key.isascii():
            position = int(key)
            return self.names[position - 1] if 1 <= position <= len(self.names) else None
        return self.by_key.get(key)


def _validated(
    records: Iterable[Row | Rejected],
    project: Project,
    matcher: _LabelMatcher,
    report: ImportReport,
) -> Iterator[Row]:
    max_chars = settings.SIFT_MAX_TEXT_CHARS
    for record in records:
        if isinstance(record, Rejected):
            report.reject(record.line, record.reason)
            continue
        given = [] if matcher.rules.ignore else record.labels
        names = [matcher.name_of(value) for value in given]
        text = normalize_text(record.text)
        if not text:
            report.reject(record.line, "empty text")
        elif any(
            contains_nul(value)
            for value in (text, record.external_id, record.metadata, record.labels)
        ):
            report.reject(record.line, "contains a NUL character")
        elif len(text) > max_chars:
            report.reject(
                record.line, f"text is {len(text):,} characters; the limit is {max_chars:,}"
            )
        elif unknown := [value for value, name in zip(given, names, strict=True) if not name]:
            report.reject(
                record.line,
                f"unknown label {unknown[0]!r} (project labels: {', '.join(matcher.names)}; "
                "map file values to labels, or import without the labels)",
            )
        elif len(given) > 1 and not project.multi_label:
            report.reject(record.line, "several labels given but the project is single-label")
        else:
            known = [name for name in names if name]
            yield Row(record.line, text, known, record.external_id, record.metadata)


def _batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _store_batch(
    project: Project,
    batch: list[Row],
    labels: dict[str, Label],
    importer: User,
    report: ImportReport,
    job: ImportJob | None,
) -> None:
    fresh = _first_of_each_text(batch, report)
    job_id = job.pk if job is not None else None
    if connection.vendor == "postgresql":
        imported, labeled = _copy_new_items(project, fresh, labels, importer, job_id)
    else:
        imported, labeled = _create_new_items(project, fresh, labels, importer, job_id)
    report.imported += imported
    report.duplicates += len(fresh) - imported
    report.labeled += labeled


def _first_of_each_text(batch: list[Row], report: ImportReport) -> dict[str, Row]:
    """The batch's rows by content hash, the first of each text; later copies are duplicates.

    Texts already in the project, or in an earlier batch, the database finds.
    """
    fresh: dict[str, Row] = {}
    for row in batch:
        digest = content_hash(row.text)
        if digest in fresh:
            report.duplicates += 1
        else:
            fresh[digest] = row
    return fresh


# The rows of one batch, copied in before they move to the items: COPY is the fastest way in,
# and ON CONFLICT on the way out leaves the texts the project holds already where they are.
_STAGING = "sift_import_rows"


def _copy_new_items(
    project: Project,
    fresh: dict[str, Row],
    labels: dict[str, Label],
    importer: User,
    job_id: int | None,
) -> tuple[int, int]:
    """PostgreSQL: COPY the rows into a temporary table, then one statement inserts the new
    items, their answers and the answers' labels; (items inserted, of them labeled)."""
    item, annotation = Item._meta.db_table, Annotation._meta.db_table
    answer_labels = Annotation.labels.through._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (line integer, text text, "
            "external_id varchar(200), metadata jsonb, content_hash varchar(64), "
            "label_ids bigint[]) ON COMMIT DROP"
        )
        copied = f"COPY {_STAGING} (line, text, external_id, metadata, content_hash, label_ids)"
        with cursor.connection.cursor() as raw, raw.copy(f"{copied} FROM STDIN") as copy:
            for digest, row in fresh.items():
                copy.write_row(
                    (
                        row.line,
                        row.text,
                        row.external_id[:200],
                        json.dumps(row.metadata),
                        digest,
                        _array_of(labels[name].pk for name in dict.fromkeys(row.labels)),
                    )
                )
        cursor.execute(
            f"""
            WITH items AS (
                INSERT INTO {item} (project_id, text, external_id, metadata, content_hash,
                    answer_count, random_key, is_random_control, excluded, created_at,
                    import_job_id)
                SELECT %(project)s, text, external_id, metadata, content_hash,
                    least(cardinality(label_ids), 1), random(), false, false, %(now)s,
                    %(job)s::bigint
                FROM {_STAGING} ORDER BY line
                ON CONFLICT (project_id, content_hash) DO NOTHING
                RETURNING id, content_hash
            ), answers AS (
                INSERT INTO {annotation} (item_id, annotator_id, skipped, seconds_spent,
                    client_id, suggested_labels, suggestion_confidence, suggestion_shown,
                    created_at, updated_at)
                SELECT items.id, %(importer)s, false, 0, gen_random_uuid(), '[]'::jsonb, NULL,
                    false, %(now)s, %(now)s
                FROM items JOIN {_STAGING} staged USING (content_hash)
                WHERE cardinality(staged.label_ids) > 0
                RETURNING id, item_id
            ), answer_labels AS (
                INSERT INTO {answer_labels} (annotation_id, label_id)
                SELECT answers.id, label_id
                FROM answers JOIN items ON items.id = answers.item_id
                JOIN {_STAGING} staged USING (content_hash),
                unnest(staged.label_ids) AS label_id
            )
            SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM answers)
            """,
            {
                "project": project.pk,
                "importer": importer.pk,
                "now": timezone.now(),
                "job": job_id,
            },
        )
        imported, labeled = cursor.fetchone()
        cursor.execute(f"TRUNCATE {_STAGING}")
    return imported, labeled


def _array_of(ids: Iterable[int]) -> str:
    """A PostgreSQL array literal: several times cheaper to COPY than a list psycopg adapts."""
    return "{" + ",".join(map(str, ids)) + "}"


def _create_new_items(
    project: Project,
    fresh: dict[str, Row],
    labels: dict[str, Label],
    importer: User,
    job_id: int | None,
) -> tuple[int, int]:
    """Other databases: the ORM's bulk inserts; (items inserted, of them labeled)."""
    seen = set(
        Item.objects.filter(project=project, content_hash__in=list(fresh)).values_list(
            "content_hash", flat=True
        )
    )
    new = [
        (
            row,
            Item(
                project=project,
                text=row.text,
                external_id=row.external_id[:200],
                metadata=row.metadata,
                content_hash=digest,
                answer_count=1 if row.labels else 0,
                import_job_id=job_id,
            ),
        )
        for digest, row in fresh.items()
        if digest not in seen
    ]
    Item.objects.bulk_create([item for _, item in new])
    labeled = [(row, item) for row, item in new if row.labels]
    if labeled:
        annotations = Annotation.objects.bulk_create(
            [Annotation(item=item, annotator=importer) for _, item in labeled]
        )
        through = Annotation.labels.through
        through.objects.bulk_create(
            [
                through(annotation_id=annotation.pk, label_id=labels[name].pk)
                for (row, _), annotation in zip(labeled, annotations, strict=True)
                for name in dict.fromkeys(row.labels)
            ]
        )
    return len(new), len(labeled)


def label_names_for(
    project: Project, rules: LabelRules, values: Iterable[str]
) -> dict[str, str | None]:
    """What each label value of a file becomes under these rules (None: no such label)."""
    matcher = _LabelMatcher(list(project.labels.order_by("position")), rules)
    return {value: matcher.name_of(value) for value in values}
