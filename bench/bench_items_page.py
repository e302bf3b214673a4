"""Items page queries on a large project: p50 and p99 ms per query, PostgreSQL and SQLite.

The project holds `--items` items (default 100,000); a third are answered once by one of four
annotators, one in twenty twice with a disagreement, one in fifty is ruled, one in a hundred
waits for review, and the items came in two imports (nine tenths, then a tenth). Each query is
what the items page runs for one page (`labeling.item_browser.page_of` plus the page's final
labels): the first page, a later page by cursor, a text search, each state filter, a final
label (which reads the whole project's labels), an annotator, the queue order, and what asks
the model: a predicted label, a confidence range, the most unsure first, likely label errors,
"more like this" and a phrase searched by meaning (the model's predictions and embeddings
are seeded as a retrain stores them; a phrase's embedding, which a worker makes, is given).
Each runs `--repeats` times after one warm-up; the table gives p50 and p99.

Django's settings are fixed per process, so each backend runs in a subprocess of this script:

    .venv/bin/python bench/bench_items_page.py                      # both backends, one table
    .venv/bin/python bench/bench_items_page.py --backend sqlite --items 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from labeling.models import Project

from harness import (  # bench/ is on sys.path when run as a script
    BACKENDS,
    add_postgres_url,
    format_ms,
    migrated_database,
    percentile,
    run_backends,
)

BENCH_DATABASE = "sift_bench_items_page"
LABEL_NAMES = ["world", "sports", "business", "science"]
QUERIES: dict[str, dict[str, str]] = {
    "first page": {},
    "text search": {"q": "quarterly"},
    "search, no match": {"q": "zebra crossing"},
    "unlabeled": {"state": "unlabeled"},
    "labeled": {"state": "labeled"},
    "skipped": {"state": "skipped"},
    "disputed": {"state": "disputed"},
    "ruled": {"state": "ruled"},
    "sent to review": {"state": "sent_to_review"},
    "annotator": {"annotator": "annotator-2"},
    "final label": {"label": "sports"},
    "queue order": {"sort": "queue"},
    "disagreement order": {"sort": "disagreement"},
    "predicted label": {"predicted": "sports"},
    "confidence 40-60%": {"min_confidence": "40", "max_confidence": "60"},
    "most unsure first": {"sort": "uncertain"},
    "predicted + search": {"predicted": "business", "q": "quarterly"},
    "likely label errors": {"suspect": "1"},
    "by meaning (phrase)": {"meaning": "a phrase a worker embedded"},
}
DIMENSION = 384


@dataclass
class Timing:
    query: str
    rows: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass
class Result:
    backend: str
    items: int
    seed_s: float = 0.0
    timings: list[Timing] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def main() -> int:
    args = _parse_args()
    return run_backends(
        args,
        run_backend,
        parse=lambda raw: Result(**{**raw, "timings": [Timing(**t) for t in raw["timings"]]}),
        failed=lambda backend, why: Result(backend, args.items, failures=[why]),
        report=_print_report,
    )


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, help="run one backend (default: both)")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=30, help="runs of each query")
    add_postgres_url(parser)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def _print_report(results: list[Result]) -> None:
    print()
    print("| backend | query | rows on the page | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|")
    for r in results:
        for t in r.timings:
            print(
                f"| {r.backend} | {t.query} | {t.rows} | {format_ms(t.p50_ms)} "
                f"| {format_ms(t.p99_ms)} |"
            )
    for r in results:
        print(f"{r.backend}: seeding {r.items:,} items took {r.seed_s:.1f} s")
        for failure in r.failures[:20]:
            print(f"FAIL {r.backend}: {failure}")


def run_backend(args: argparse.Namespace) -> Result:
    result = Result(args.backend, args.items)
    with migrated_database(args.backend, args.postgres_url, BENCH_DATABASE):
        started = time.perf_counter()
        project = _seed(args.items)
        result.seed_s = time.perf_counter() - started
        _log(f"{args.backend}: seeded {args.items} items in {result.seed_s:.1f}s")
        queries = {
            **QUERIES,
            "second page": {"after": str(_second_page_cursor(project))},
            "more like this": {"like": str(project.items.order_by("pk")[500].pk)},
            # The newer of the two imports: the last tenth of the items.
            "imported batch": {"batch": str(project.import_jobs.order_by("-pk")[0].pk)},
        }
        for name, params in queries.items():
            timing = _time_query(project, name, params, args.repeats)
            _log(f"{args.backend}: {name}: p50 {format_ms(timing.p50_ms)} ms")
            result.timings.append(timing)
    return result


def _second_page_cursor(project: Project) -> int:
    from labeling.item_browser import ItemQuery, page_of

    cursor = page_of(project, ItemQuery()).cursor
    return cursor or 0


def _time_query(project: Project, name: str, params: dict[str, str], repeats: int) -> Timing:
    from labeling.item_browser import ItemQuery, final_labels_of, page_of

    query = ItemQuery.from_params(project, params)
    # A phrase's embedding comes from a worker through the cache; here, a made-up one.
    near = np.random.default_rng(1).normal(size=DIMENSION).astype(np.float32)
    samples: list[float] = []
    rows = 0
    for run in range(repeats + 1):
        started = time.perf_counter()
        items = page_of(project, query, near if query.meaning else None).items
        final_labels_of(project, items)
        if run:  # the first run warms caches
            samples.append((time.perf_counter() - started) * 1000)
        rows = len(items)
    return Timing(name, rows, percentile(samples, 50), percentile(samples, 99))


def _seed(count: int) -> Project:
    from django.contrib.auth.models import User
    from django.db import connection

    from labeling.models import (
        Adjudication,
        Annotation,
        ImportJob,
        Item,
        Project,
        QueueEntry,
        ReviewRequest,
        content_hash,
    )

    project = Project.objects.create(name="Items page bench", overlap=2)
    # Two imports: nine tenths of the items, then the rest.
    first, second = (
        ImportJob.objects.create(project=project, file_name=name, status=ImportJob.Status.DONE)
        for name in ("first.csv", "second.csv")
    )
    labels = project.set_labels(LABEL_NAMES)
    people = [User.objects.create_user(f"annotator-{n}") for n in range(4)]
    words = ["quarterly earnings", "late goal", "new chip", "peace talks", "rain delay"]
    items = Item.objects.bulk_create(
        (
            Item(
                project=project,
                text=f"Item {n}: a story about {words[n % 5]} number {n % 977}.",
                content_hash=content_hash(f"item {n}"),
                answer_count=(2 if n % 20 == 0 else 1) if n % 3 == 0 else 0,
                import_job=first if n < count * 9 // 10 else second,
            )
            for n in range(count)
        ),
        batch_size=2000,
    )
    answers: list[Annotation] = []
    chosen: list[int] = []
    for n, item in enumerate(items):
        if n % 3:
            continue
        answers.append(Annotation(item=item, annotator=people[n % 4], skipped=n % 30 == 3))
        chosen.append(n % 4)
        if n % 20 == 0:
            answers.append(Annotation(item=item, annotator=people[(n + 1) % 4]))
            chosen.append((n + 1) % 4)
    answers = Annotation.objects.bulk_create(answers, batch_size=2000)
    through = Annotation.labels.through
    through.objects.bulk_create(
        (
            through(annotation_id=answer.pk, label_id=labels[label].pk)
            for answer, label in zip(answers, chosen, strict=True)
            if not answer.skipped
        ),
        batch_size=2000,
    )
    rulings = Adjudication.objects.bulk_create(
        (Adjudication(item=item) for n, item in enumerate(items) if n % 50 == 0), batch_size=2000
    )
    Adjudication.labels.through.objects.bulk_create(
        (Adjudication.labels.through(adjudication_id=r.pk, label_id=labels[1].pk) for r in rulings),
        batch_size=2000,
    )
    ReviewRequest.objects.bulk_create(
        (ReviewRequest(item=item, note="check") for n, item in enumerate(items) if n % 100 == 7),
        batch_size=2000,
    )
    QueueEntry.objects.bulk_create(
        (
            QueueEntry(project=project, item=item, rank=rank)
            for rank, item in enumerate(items[1::3][:1000])
        ),
        batch_size=2000,
    )
    _seed_model(project, [item.pk for item in items], [label.pk for label in labels])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return project


def _seed_model(project: Project, item_ids: list[int], label_ids: list[int]) -> None:
    """A model version as a retrain leaves it: every item's prediction, every item's
    embedding (unit vectors around four centroids) and a list of likely label errors."""
    from django.utils import timezone

    from modeling.core.predictions import top_predictions
    from modeling.models import EmbeddingChunk, ModelVersion, PredictionSet

    rng = np.random.default_rng(0)
    ids = np.array(item_ids, dtype=np.int64)
    # Answered, neither skipped nor ruled, and not labeled world (see _seed).
    errors = [[int(pk), label_ids[0], 0.9] for pk in ids[9::600]]
    version = ModelVersion.objects.create(
        project=project,
        number=1,
        encoder="bench-encoder",
        strategy="margin",
        labels_used=len(ids) // 3,
        snapshot_at=timezone.now(),
        metrics={"label_errors": errors},
    )
    probabilities = rng.dirichlet(np.ones(len(label_ids)), size=len(ids))
    PredictionSet.pack(
        version,
        label_ids,
        False,
        ids,
        top_predictions(probabilities),
        np.zeros(len(ids), dtype=bool),
    ).save()
    centroids = rng.normal(size=(len(label_ids), DIMENSION))
    for start in range(0, len(ids), 512):
        chunk = ids[start : start + 512]
        vectors = centroids[rng.integers(0, len(label_ids), len(chunk))]
        vectors = vectors + rng.normal(scale=0.5, size=vectors.shape)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        EmbeddingChunk.pack(
            project, "bench-encoder", chunk.tolist(), vectors.astype(np.float32)
        ).save()


def _log(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
