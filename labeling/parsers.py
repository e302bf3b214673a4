"""Streaming readers for CSV, TSV, JSONL and plain-text item files (no Django here).

Each reader yields one `Row` or `Rejected` per record, with its line number, and never holds
the whole file in memory. Problems with one record reject that record; problems with the file
as a whole (a missing column, a broken quote) raise `ParseError`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePath

from labeling.csv_safety import looks_like_formula

FORMATS = ("csv", "tsv", "jsonl", "txt")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".txt": "txt",
}
_CSV_FIELD_LIMIT = 16 * 1024 * 1024
MULTI_LABEL_SEPARATOR = "|"
# The columns of a Sift export, in order (labeling/exports/rows.py writes them).
EXPORT_COLUMNS = [
    "id",
    "external_id",
    "text",
    "label",
    "labels",
    "agreement",
    "adjudicated",
    "answers_count",
    "prediction",
    "confidence",
    "model_version",
    "random_control",
    "metadata",
]
# What an export adds about the old project rather than the item: not kept when importing one
# ("metadata" is merged back in flat, "answers" comes with answers=1).
EXPORT_ONLY_KEYS = frozenset(EXPORT_COLUMNS) - {"external_id", "text", "label"} | {"answers"}


MAX_JSON_DEPTH = 32
"""Deepest nesting of lists and objects accepted in JSON input (a record, a settings value)."""


def json_depth(value: object) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar is 0), counted
    without recursion, so any depth is measured safely."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict | list):
            deepest = max(deepest, depth + 1)
            children = current.values() if isinstance(current, dict) else current
            stack.extend((child, depth + 1) for child in children)
    return deepest


class ParseError(Exception):
    """The file as a whole cannot be read; nothing from it should be kept."""


@dataclass(frozen=True)
class Row:
    line: int
    text: str
    labels: list[str] = field(default_factory=list)
    external_id: str = ""
    metadata: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass(frozen=True)
class Columns:
    """Where to find each field: header names, or 1-based positions when there is no header."""

    text: list[str] = field(default_factory=list)
    label: str | None = None
    external_id: str | None = None
    has_header: bool = True


def guess_format(filename: str) -> str:
    """The format named by the file's extension, or a ParseError asking for --format."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise ParseError(
            f"Cannot tell the format of {PurePath(filename).name!r} from its extension; "
            f"choose one of: {', '.join(FORMATS)}."
        )
    return _EXTENSIONS[suffix]


def read_rows(stream: Iterable[bytes], fmt: str, columns: Columns) -> Iterator[Row | Rejected]:
    """Yield the records of a UTF-8 file in the given format."""
    if fmt not in FORMATS:
        raise ParseError(f"Unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}.")
    lines = _DecodedLines(stream)
    if fmt == "jsonl":
        return _read_jsonl(lines, columns)
    if fmt == "txt":
        return _read_txt(lines)
    return _read_delimited(lines, columns, "\t" if fmt == "tsv" else ",")


# Files that are not text, by their first bytes: the message says what the file looks like.
MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (an Excel or OpenDocument workbook is one: save it as CSV)",
    b"\x1f\x8b": "a gzip archive",
    b"\xd0\xcf\x11\xe0": "an old Excel or Word file (save it as CSV)",
    b"PAR1": "a Parquet file",
}
BINARY_CHECK_LINES = 50


def _refuse_binary(raw: bytes, number: int) -> None:
    """A file that starts like a known binary format, or has NUL bytes in its first lines, is
    refused as a whole: its "rows" would be junk (a PNG renamed .csv became an item U+001A)."""
    if number == 1:
        for magic, kind in MAGIC.items():
            if raw.startswith(magic):
                raise ParseError(f"This file is not text: it looks like {kind}.")
    if b"\x00" in raw:
        raise ParseError(
            f"This file is not text: line {number} holds NUL bytes. Upload a UTF-8 CSV, "
            "TSV, JSONL or plain-text file (a UTF-16 file is saved as UTF-8 first)."
        )


class _DecodedLines:
    """Decodes a binary stream line by line, remembering lines that are not valid UTF-8."""

    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream
        self.undecodable: dict[int, str] = {}
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self._stream:
            self.number += 1
            if self.number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if self.number <= BINARY_CHECK_LINES:
                _refuse_binary(raw, self.number)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.undecodable[self.number] = (
                    f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                )
                yield "\n"


def _read_txt(lines: _DecodedLines) -> Iterator[Row | Rejected]:
    for text in lines:
        if lines.number in lines.undecodable:
            yield Rejected(lines.number, lines.undecodable[lines.number])
        elif text.strip():
            yield Row(lines.number, text.strip())


def _read_jsonl(lines: _DecodedLines, columns: Columns) -> Iterator[Row | Rejected]:
    text_keys = columns.text or ["text"]
    for raw in lines:
        number = lines.number
        if number in lines.undecodable:
            yield Rejected(number, lines.undecodable[number])
            continue
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            too_deep = json_depth(record) > MAX_JSON_DEPTH
        except json.JSONDecodeError as exc:
            yield Rejected(number, f"invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        except RecursionError:
            too_deep = True
        if too_deep:
            yield Rejected(number, f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
            continue
        if not isinstance(record, dict):
            yield Rejected(number, "each line must be a JSON object")
            continue
        missing = [key for key in text_keys if key not in record]
        if missing:
            yield Rejected(number, f"no {missing[0]!r} field")
            continue
        label_key = columns.label or next((k for k in ("label", "labels") if k in record), None)
        id_key = columns.external_id or next(
            (k for k in ("external_id", "id") if k in record), None
        )
        used = {*text_keys, label_key, id_key, *EXPORT_ONLY_KEYS}
        metadata = {k: v for k, v in record.items() if k not in used}
        # A Sift export nests metadata; importing it back keeps it flat, as it was.
        if isinstance(record.get("metadata"), dict) and "metadata" not in text_keys:
            metadata.update(record["metadata"])
        yield Row(
            line=number,
            text=" ".join(_as_text(record[key]) for key in text_keys),
            labels=_split_labels(record.get(label_key)) if label_key else [],
            external_id=_as_text(record.get(id_key, "")) if id_key else "",
            metadata=metadata,
        )


def _read_delimited(
    lines: _DecodedLines, columns: Columns, delimiter: str
) -> Iterator[Row | Rejected]:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    # TSV has no quoting convention: a quote inside a tab-separated field is just a character.
    if delimiter == "\t":
        reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE, strict=True)
    else:
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
    rows = _checked(reader, lines)
    if delimiter == ",":
        rows = ((number, _unquoted(values)) for number, values in rows)
    header: list[str] = []
    if columns.has_header:
        first = next(rows, None)
        if first is None:
            return
        header = [name.strip() for name in first[1]]
    text_at, label_at, id_at = _positions(header, columns)
    needed = max([*text_at, label_at if label_at is not None else -1, id_at or -1]) + 1
    described = {*text_at, label_at, id_at}
    for number, values in rows:
        if number in lines.undecodable:
            yield Rejected(number, lines.undecodable[number])
            continue
        if not values:
            continue
        if len(values) < needed:
            yield Rejected(number, f"expected at least {needed} columns, found {len(values)}")
            continue
        metadata: dict[str, object] = {}
        if header:
            metadata = {
                name: values[i]
                for i, name in enumerate(header)
                if i < len(values) and i not in described and name
            }
        yield Row(
            line=number,
            text=" ".join(values[i] for i in text_at),
            labels=_split_labels(values[label_at]) if label_at is not None else [],
            external_id=values[id_at].strip() if id_at is not None else "",
            metadata=metadata,
        )


def _checked(reader: Iterable[list[str]], lines: _DecodedLines) -> Iterator[tuple[int, list[str]]]:
    iterator = iter(reader)
    while True:
        start = lines.number + 1
        try:
            values = next(iterator)
        except StopIteration:
            return
        except csv.Error as exc:
            hint = (
                " (is a quote left open?)"
                if "quote" in str(exc) or "end of data" in str(exc)
                else ""
            )
            raise ParseError(f"line {start}: {exc}{hint}") from exc
        yield lines.number, values


def _unquoted(values: list[str]) -> list[str]:
    """The cells as they were before Sift's CSV export put a ' before those a spreadsheet would
    run as a formula (labeling/csv_safety.py), so an export imports back as it was."""
    return [
        value[1:] if looks_like_formula(value) and value[:1] == "'" else value for value in values
    ]


def _is_position(name: str) -> bool:
    """ASCII digits only: "²" passes ``isdigit`` and fails ``int``."""
    return name.isascii() and name.isdigit()


def _positions(header: list[str], columns: Columns) -> tuple[list[int], int | None, int | None]:
    def find(name: str) -> int:
        if not header:
            if not _is_position(name) or int(name) < 1:
                raise ParseError(
                    f"Column {name!r}: without a header, columns are given by position (1, 2, ...)."
                )
            return int(name) - 1
        if name in header:
            return header.index(name)
        if _is_position(name) and 1 <= int(name) <= len(header):
            return int(name) - 1
        raise ParseError(f"Column {name!r} not found; the header has: {', '.join(header)}.")

    if columns.text:
        text_at = [find(name) for name in columns.text]
    elif not header:
        text_at = [0]
    elif "text" in header:
        text_at = [header.index("text")]
    elif len(header) == 1:
        text_at = [0]
    else:
        raise ParseError(
            f"No 'text' column; pass the text column. The header has: {', '.join(header)}."
        )
    label_name = columns.label or next((n for n in ("label", "labels") if n in header), None)
    # As in JSONL: a Sift export has both, and its "id" is the old project's item id.
    id_name = columns.external_id or next((n for n in ("external_id", "id") if n in header), None)
    return (
        text_at,
        find(label_name) if label_name else None,
        find(id_name) if id_name else None,
    )


def _as_text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _split_labels(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    return [part.strip() for part in text.split(MULTI_LABEL_SEPARATOR) if part.strip()]
