"""What an import would read from a file, shown before anything is written."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice

from labeling.importing import LabelRules, label_names_for
from labeling.models import Project
from labeling.parsers import Columns, ParseError, Rejected, Row, read_rows

PREVIEW_ROWS = 10
# Bytes of the file read to list its columns.
HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class PreviewRow:
    line: int
    text: str = ""
    external_id: str = ""
    # Each label value in the file and the project label it becomes ("" when none).
    labels: list[tuple[str, str]] = field(default_factory=list)
    rejected: str = ""


@dataclass(frozen=True)
class Preview:
    # The file's columns, as the header names them (or 1, 2, ... without a header).
    columns: list[str]
    rows: list[PreviewRow]
    # Why the file cannot be read as asked (the columns still show, to choose from).
    problem: str = ""


def preview_of(
    project: Project,
    head: bytes,
    stream: Iterable[bytes],
    fmt: str,
    columns: Columns,
    rules: LabelRules,
) -> Preview:
    """The first PREVIEW_ROWS records as the import would read them, and the columns there are
    to choose from; `problem` says why a file cannot be read as asked."""
    found = _columns(head, fmt, columns.has_header)
    try:
        records = list(islice(read_rows(stream, fmt, columns), PREVIEW_ROWS))
    except ParseError as exc:
        return Preview(found, [], str(exc))
    values = {value for r in records if isinstance(r, Row) for value in r.labels}
    names = label_names_for(project, rules, values) if not rules.ignore else {}
    rows = []
    for record in records:
        if isinstance(record, Rejected):
            rows.append(PreviewRow(record.line, rejected=record.reason))
            continue
        labels = [] if rules.ignore else [(v, names.get(v) or "") for v in record.labels]
        rows.append(PreviewRow(record.line, record.text, record.external_id, labels))
    return Preview(found, rows)


def _columns(head: bytes, fmt: str, has_header: bool) -> list[str]:
    text = head.decode("utf-8", errors="replace")
    first = text.splitlines()[0] if text.strip() else ""
    if fmt == "txt" or not first:
        return []
    if fmt == "jsonl":
        try:
            record = json.loads(first)
        except ValueError:
            return []
        return [str(key) for key in record] if isinstance(record, dict) else []
    delimiter = "\t" if fmt == "tsv" else ","
    cells = next(csv.reader(io.StringIO(first), delimiter=delimiter), [])
    if not has_header:
        return [str(position) for position in range(1, len(cells) + 1)]
    return [cell.strip() for cell in cells]
