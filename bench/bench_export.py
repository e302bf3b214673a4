"""Export benchmark: rows/s exporting labeled items as JSONL, CSV and Parquet; bulk import rows/s.

The project holds `--items` items, each with one answer and a model prediction. Each export runs
the same row generator and writers the API streams (`labeling.exports`), to an in-memory sink
(JSONL, CSV) or a temporary file (Parquet). The import reads a JSONL file of as many labeled
lines through `import_items`, as `manage.py import_items` and the API do.

Django's settings are fixed per process, so each backend runs in a subprocess of this script
against a database of its own (PostgreSQL: a `sift_bench_export` database, dropped afterwards;
SQLite: a temporary file):

    .venv/bin/python bench/bench_export.py                      # both backends, one table
    .venv/bin/python bench/bench_export.py --backend sqlite --items 20000
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labeling.models import Project

from harness import (  # bench/ is on sys.path when run as a script
    BACKENDS,
    add_postgres_url,
    migrated_database,
    run_backends,
)

BENCH_DATABASE = "sift_bench_export"
LABEL_NAMES = ["positive", "negative", "neutral"]
FORMATS = ("jsonl", "csv", "parquet")


@dataclass
class Timing:
    operation: str
    rows: int
    seconds: float
    output_bytes: int = 0


@dataclass
class Result:
    """What one backend's run measured, passed from the subprocess to the parent as JSON."""

    backend: str
    items: int
    seed_s: float = 0.0
    timings: list[Timing] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# Parent: run each backend in a subprocess and print one table.


def main() -> int:
    args = _parse_args()
    return run_backends(
        args,
        run_backend,
        parse=_result_from_json,
        failed=lambda backend, why: Result(backend, args.items, failures=[why]),
        report=_print_report,
    )


def _result_from_json(raw: dict[str, Any]) -> Result:
    timings = [Timing(**timing) for timing in raw.pop("timings")]
    return Result(**raw, timings=timings)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, help="run one backend (default: both)")
    parser.add_argument("--items", type=int, default=100_000, help="labeled items to export")
    add_postgres_url(parser)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def _print_report(results: list[Result]) -> None:
    print()
    print("| backend | operation | rows | seconds | rows/s | file MB |")
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        for t in r.timings:
            rate = t.rows / t.seconds if t.seconds else 0.0
            size = f"{t.output_bytes / 1e6:.1f}" if t.output_bytes else "-"
            print(
                f"| {r.backend} | {t.operation} | {t.rows:,} | {t.seconds:.2f} "
                f"| {rate:,.0f} | {size} |"
            )
    print()
    print(
        "Each item has one answer and a model prediction; export = read in chunks of 2,000 "
        "items + write; import = parse + validate + de-duplicate + insert items and answers."
    )
    for r in results:
        print(f"{r.backend}: seeding {r.items:,} labeled items in bulk took {r.seed_s:.1f} s")
        for failure in r.failures[:20]:
            print(f"FAIL {r.backend}: {failure}")


# Subprocess: one backend, one fresh database.


def run_backend(args: argparse.Namespace) -> Result:
    result = Result(args.backend, args.items)
    with migrated_database(args.backend, args.postgres_url, BENCH_DATABASE):
        started = time.perf_counter()
        project = _seed(args.items)
        result.seed_s = time.perf_counter() - started
        _log(f"{args.backend}: seeded {args.items} labeled items in {result.seed_s:.1f}s")
        for fmt in FORMATS:
            timing = _time_export(project, fmt)
            _log(f"{args.backend}: {timing.operation} in {timing.seconds:.1f}s")
            if timing.rows != args.items:
                result.failures.append(f"{fmt}: {timing.rows} rows, not {args.items}")
            result.timings.append(timing)
        timing = _time_import(args.items)
        _log(f"{args.backend}: {timing.operation} in {timing.seconds:.1f}s")
        if timing.rows != args.items:
            result.failures.append(f"import: {timing.rows} labeled, not {args.items}")
        result.timings.append(timing)
    return result


def _texts(prefix: str, count: int) -> Iterator[str]:
    for n in range(count):
        yield f"{prefix} {n}: a short review of product {n % 977}, rated {n % 5 + 1} of 5."


def _seed(count: int) -> Project:
    """A project of labeled items, each answered once and ranked with a prediction."""
    from django.db import connection

    from labeling.models import (
        Annotation,
        Item,
        Project,
        QueueEntry,
        content_hash,
        imported_annotator,
    )

    project = Project.objects.create(name="Export bench")
    labels = project.set_labels(LABEL_NAMES)
    importer = imported_annotator()
    items = Item.objects.bulk_create(
        (
            Item(
                project=project,
                text=text,
                content_hash=content_hash(text),
                metadata={"source": "bench", "n": n},
                answer_count=1,
            )
            for n, text in enumerate(_texts("Bench item", count))
        ),
        batch_size=2000,
    )
    answers = Annotation.objects.bulk_create(
        (Annotation(item=item, annotator=importer, seconds_spent=3.0) for item in items),
        batch_size=2000,
    )
    through = Annotation.labels.through
    through.objects.bulk_create(
        (
            through(annotation_id=answer.pk, label_id=labels[n % 3].pk)
            for n, answer in enumerate(answers)
        ),
        batch_size=2000,
    )
    QueueEntry.objects.bulk_create(
        (
            QueueEntry(
                project=project,
                item=item,
                rank=n,
                model_version=1,
                suggested_labels=[labels[(n + 1) % 3].pk],
                confidence=0.5 + (n % 50) / 100,
            )
            for n, item in enumerate(items)
        ),
        batch_size=2000,
    )
    if connection.vendor == "postgresql":
        # Autovacuum analyzes a freshly loaded table within a minute in production.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return project


def _time_export(project: Project, fmt: str) -> Timing:
    from labeling.exports.request import ExportOptions
    from labeling.exports.rows import export_rows
    from labeling.exports.writers import CountedRows, text_blocks, write_parquet

    options = ExportOptions()
    started = time.perf_counter()
    rows = export_rows(project, options)
    if fmt == "parquet":
        with tempfile.TemporaryDirectory(prefix="sift-bench-") as directory:
            path = Path(directory) / "export.parquet"
            count = write_parquet(rows, str(path), with_answers=False)
            seconds = time.perf_counter() - started
            size = path.stat().st_size
        return Timing(f"export {fmt}", count, seconds, size)
    counted = CountedRows(rows)
    blocks = text_blocks(counted, fmt, with_answers=False)
    size = sum(len(block) for block in blocks)
    return Timing(f"export {fmt}", counted.count, time.perf_counter() - started, size)


def _time_import(count: int) -> Timing:
    from labeling.importing import import_items
    from labeling.models import Project
    from labeling.parsers import Columns

    project = Project.objects.create(name="Import bench")
    project.set_labels(LABEL_NAMES)
    lines = (
        json.dumps({"id": f"r{n}", "text": text, "label": LABEL_NAMES[n % 3], "source": "bench"})
        for n, text in enumerate(_texts("Imported item", count))
    )
    data = ("\n".join(lines) + "\n").encode("utf-8")
    started = time.perf_counter()
    report = import_items(project, io.BytesIO(data), "jsonl", Columns())
    return Timing("import jsonl", report.labeled, time.perf_counter() - started, len(data))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
