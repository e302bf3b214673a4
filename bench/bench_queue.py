"""Queue benchmark: next-item and submit latency with concurrent annotators.

Every annotator is a thread with its own database connection that repeats lease -> submit. The
run also checks the queue's promises: no item is held by two annotators at once, no answered
item is served again, and every submitted answer is in the database at the end.

Django's settings are fixed per process, so each backend runs in a subprocess of this script
against a database of its own (PostgreSQL: a `sift_bench` database, dropped afterwards;
SQLite: a temporary file):

    .venv/bin/python bench/bench_queue.py                       # both backends, one table
    .venv/bin/python bench/bench_queue.py --backend sqlite --annotators 4 --explain
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import traceback
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from labeling.models import Project

from harness import (  # bench/ is on sys.path when run as a script
    BACKENDS,
    add_postgres_url,
    format_ms,
    migrated_database,
    percentile,
    run_backends,
    start_annotators,
)

BENCH_DATABASE = "sift_bench"
LABEL_NAMES = ["positive", "negative", "neutral"]


@dataclass
class Result:
    """What one backend's run measured, passed from the subprocess to the parent as JSON."""

    backend: str
    annotators: int
    items: int
    lease_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    failures: list[str] = field(default_factory=list)


class Ledger:
    """Who holds which item right now, as the annotator threads see it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: dict[int, int] = {}
        self._served_to: dict[int, int] = {}
        self.failures: list[str] = []

    def leased(self, item_id: int, annotator_id: int) -> None:
        with self._lock:
            holder = self._holder.get(item_id)
            if holder is not None and holder != annotator_id:
                self.failures.append(f"item {item_id} held by {holder} and {annotator_id}")
            first = self._served_to.setdefault(item_id, annotator_id)
            # With overlap 1 an item is served to one annotator, ever: once answered it leaves.
            if first != annotator_id:
                self.failures.append(f"item {item_id} served to {first}, then {annotator_id}")
            self._holder[item_id] = annotator_id

    def answered(self, item_id: int, annotator_id: int) -> None:
        with self._lock:
            if self._holder.get(item_id) == annotator_id:
                del self._holder[item_id]

    def fail(self, message: str) -> None:
        with self._lock:
            self.failures.append(message)


# Parent: run each backend in a subprocess and print one table.


def main() -> int:
    args = _parse_args()
    return run_backends(
        args,
        run_backend,
        parse=lambda raw: Result(**raw),
        failed=lambda backend, why: Result(backend, args.annotators, args.items, failures=[why]),
        report=lambda results: _print_report(results, args),
    )


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, help="run one backend (default: both)")
    parser.add_argument("--annotators", type=int, default=8, help="concurrent annotator threads")
    parser.add_argument("--answers", type=int, default=50, help="lease -> submit rounds each")
    parser.add_argument("--items", type=int, default=20_000, help="items in the project")
    add_postgres_url(parser)
    parser.add_argument(
        "--explain", action="store_true", help="print the plan of the next-item query at the end"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def _print_report(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(
        "| backend | annotators | items | next-item p50 ms | next-item p99 ms "
        "| submit p50 ms | submit p99 ms | leases/s | check |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        leases_per_s = len(r.lease_ms) / r.wall_s if r.wall_s else 0.0
        print(
            f"| {r.backend} | {r.annotators} | {r.items} "
            f"| {format_ms(percentile(r.lease_ms, 50))} | {format_ms(percentile(r.lease_ms, 99))} "
            f"| {format_ms(percentile(r.submit_ms, 50))} "
            f"| {format_ms(percentile(r.submit_ms, 99))} "
            f"| {leases_per_s:.1f} | {'FAIL' if r.failures else 'OK'} |"
        )
    print()
    print(f"{args.answers} lease -> submit rounds per annotator; leases/s: all leases / wall time.")
    for r in results:
        for failure in r.failures[:20]:
            print(f"FAIL {r.backend}: {failure}")


# Subprocess: one backend, one fresh database.


def run_backend(args: argparse.Namespace) -> Result:
    started = time.perf_counter()
    with migrated_database(args.backend, args.postgres_url, BENCH_DATABASE):
        _log(f"{args.backend}: migrated in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        project_id, user_ids = _seed(args)
        seconds = time.perf_counter() - started
        _log(f"{args.backend}: seeded {args.items} items in {seconds:.1f}s")
        result = _run_annotators(args, project_id, user_ids)
        _log(f"{args.backend}: {len(result.lease_ms)} rounds in {result.wall_s:.1f}s")
        if args.explain:
            _explain(project_id)
        return result


def _seed(args: argparse.Namespace) -> tuple[int, list[int]]:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from labeling.models import Item, Membership, Project, Role, content_hash

    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        [user_model(username=f"annotator{n}") for n in range(args.annotators)]
    )
    project = Project.objects.create(name="Queue bench", overlap=1)
    project.set_labels(LABEL_NAMES)
    Membership.objects.bulk_create(
        [Membership(project=project, user=user, role=Role.ANNOTATOR) for user in users]
    )
    texts = (f"Bench item {n}: a short review of product {n % 977}." for n in range(args.items))
    Item.objects.bulk_create(
        (Item(project=project, text=text, content_hash=content_hash(text)) for text in texts),
        batch_size=2000,
    )
    if connection.vendor == "postgresql":
        # Autovacuum analyzes a freshly loaded table within a minute in production; without
        # statistics the planner would be judged on guesses no deployment runs with for long.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    if not connection.get_autocommit():
        raise RuntimeError("seeding left a transaction open")
    return project.pk, [user.pk for user in users]


def _run_annotators(args: argparse.Namespace, project_id: int, user_ids: list[int]) -> Result:
    result = Result(args.backend, args.annotators, args.items)
    ledger = Ledger()
    submitted: list[tuple[int, int, int]] = []
    record_lock = threading.Lock()
    start = threading.Barrier(len(user_ids) + 1)

    def annotate(user_id: int, offset: int) -> None:
        from django.contrib.auth import get_user_model
        from django.db import connection
        from django.utils import timezone

        from labeling.models import Lease, Project
        from labeling.queue import lease_next_item
        from labeling.services import resolve_labels, submit_answer

        started = False
        try:
            project: Project = Project.objects.get(pk=project_id)
            annotator: User = get_user_model().objects.get(pk=user_id)
            connection.ensure_connection()
            start.wait()
            started = True
            answered: set[int] = set()
            for round_number in range(args.answers):
                began = time.perf_counter()
                item = lease_next_item(project, annotator)
                leased = time.perf_counter()
                if item is None:
                    ledger.fail(f"annotator {user_id} got no item in round {round_number}")
                    return
                ledger.leased(item.pk, user_id)
                if item.pk in answered:
                    ledger.fail(f"annotator {user_id} was served item {item.pk} again")
                others = Lease.objects.filter(item=item, expires_at__gt=timezone.now()).exclude(
                    annotator=annotator
                )
                if others.exists():
                    ledger.fail(f"item {item.pk} has another active lease in the database")
                labels = resolve_labels(project, [LABEL_NAMES[(offset + round_number) % 3]])
                before_submit = time.perf_counter()
                submit_answer(
                    project, annotator, item, labels, seconds_spent=1.0, client_id=uuid.uuid4()
                )
                submitted_at = time.perf_counter()
                ledger.answered(item.pk, user_id)
                answered.add(item.pk)
                with record_lock:
                    result.lease_ms.append((leased - began) * 1000)
                    result.submit_ms.append((submitted_at - before_submit) * 1000)
                    submitted.append((user_id, item.pk, labels[0].pk))
        except Exception:
            ledger.fail(f"annotator {user_id} crashed:\n{traceback.format_exc()}")
            if not started:
                start.abort()  # the others would wait for this thread forever
        finally:
            connection.close()

    threads = start_annotators(annotate, user_ids)
    with suppress(threading.BrokenBarrierError):
        start.wait()  # a thread that crashed before the start broke the barrier
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    result.wall_s = time.perf_counter() - began
    result.failures = ledger.failures + _check_database(project_id, submitted)
    return result


def _check_database(project_id: int, submitted: list[tuple[int, int, int]]) -> list[str]:
    """Compare what the threads submitted with what the database holds."""
    from django.db.models import Count, F, Q

    from labeling.models import Annotation, Item, Lease

    failures = []
    stored = set(
        Annotation.objects.filter(item__project_id=project_id).values_list(
            "annotator_id", "item_id", "labels"
        )
    )
    missing = set(submitted) - stored
    if missing:
        failures.append(f"{len(missing)} submitted answers missing, e.g. {sorted(missing)[:3]}")
    if len(stored) != len(submitted):
        failures.append(f"{len(submitted)} answers submitted but {len(stored)} stored")
    drifted = (
        Item.objects.filter(project_id=project_id)
        .annotate(answers=Count("annotations"))
        .filter(~Q(answer_count=F("answers")))
        .count()
    )
    if drifted:
        failures.append(f"{drifted} items whose answer_count differs from their answers")
    leftover = Lease.objects.filter(project_id=project_id).count()
    if leftover:
        failures.append(f"{leftover} leases left after every answer was submitted")
    return failures


def _explain(project_id: int) -> None:
    """Print the next-item candidate query as lease_next_item sends it, with its plan."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from labeling.models import Membership, Project, Role
    from labeling.queue import lease_next_item

    project = Project.objects.get(pk=project_id)
    reader = get_user_model().objects.create(username="explain")
    Membership.objects.create(project=project, user=reader, role=Role.ANNOTATOR)
    with CaptureQueriesContext(connection) as captured:
        lease_next_item(project, reader)
    order = 'ORDER BY "labeling_item"."random_key"'
    candidate = next(q["sql"] for q in captured.captured_queries if order in q["sql"])
    print(f"\n{connection.vendor} next-item candidate query:\n{candidate}\n")
    if connection.vendor == "postgresql":
        explain = f"EXPLAIN (ANALYZE, BUFFERS) {candidate}"
    else:
        explain = f"EXPLAIN QUERY PLAN {candidate}"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(explain)
        for row in cursor.fetchall():
            print("   ", " ".join(str(column) for column in row))
        transaction.set_rollback(True)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
