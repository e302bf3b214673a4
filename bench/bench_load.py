"""Load benchmark: annotators over HTTP against gunicorn and PostgreSQL while a worker retrains.

What production runs, on this machine: gunicorn serving config.wsgi as the Dockerfile starts it
(3 workers), a Celery worker (concurrency 1, its CPU priority lowered by SIFT_WORKER_NICENESS
as in production), PostgreSQL (a `sift_bench_load` database, dropped afterwards) and a private
redis-server as the broker. The project has `--items` items whose embeddings are stored already
(synthetic, seeded as bench/bench_retrain.py does) and `--labeled` answers, and retrains every
10 answers, so with annotators at work the worker retrains back to back.

For each level of `--annotators` (default 8, 32, 64), that many threads, each an annotator
with an API token and a keep-alive HTTP session, repeat GET .../queue/next/ then POST
.../annotations/ for `--seconds`. The table gives p50/p99 of each request, requests/s (both
kinds, all threads, over the phase's wall time), and how many retrains finished meanwhile. The
run also checks that every acknowledged answer is in the database and no request failed.
"web CPU ms/request" is the CPU time gunicorn used per request, which a busy machine changes
less than latency.

Before the worker starts, a lead imports `--import-file` (AG News' test set, 7,600 rows, as
JSONL with its labels) in one POST .../items/ into a fresh project, `--import-repeats` times:
rows/s over HTTP. With `--against REV` the same rows are also imported in this process by
`import_items` of this checkout and of REV (loaded from git), alternated: the ratio of the two.

`--backend sqlite` runs the embedded set-up instead: the same gunicorn on a SQLite file and
the worker on the file-system broker, no Redis.

    .venv/bin/python bench/bench_load.py
    .venv/bin/python bench/bench_load.py --annotators 1 8 32 --seconds 20 --against b206bbd
    .venv/bin/python bench/bench_load.py --backend sqlite --annotators 1 8 32 --seconds 20
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_next_item import _module_at as module_at_revision
from bench_retrain import _seed as seed_project_with_embeddings
from harness import (
    REPO_ROOT,
    add_postgres_url,
    announce,
    format_ms,
    migrated_database,
    percentile,
    start_annotators,
)

sys.path.insert(0, str(REPO_ROOT))
from tests.servers import (
    children_of,
    http_session,
    running_celery_worker,
    running_gunicorn,
    running_redis,
    wait_for,
)

BENCH_DATABASE = "sift_bench_load"
LABEL_NAMES = ["world", "sports", "business", "science"]
AG_NEWS_TEST = REPO_ROOT.parent / "shared" / "datasets" / "ag_news" / "test.csv"


@dataclass
class Phase:
    """What one level of concurrency measured."""

    annotators: int
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    retrains: int = 0
    web_cpu_s: float = 0.0
    acknowledged: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class Imports:
    """What the import measured: seconds per whole-file import, over HTTP and in process."""

    rows: int = 0
    http_s: list[float] = field(default_factory=list)
    this_checkout_s: list[float] = field(default_factory=list)
    against_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def main() -> int:
    args = _parse_args()
    command = announce()
    with ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sift-load-")))
        env = {"SECRET_KEY": "bench-only-secret", "LOG_LEVEL": "WARNING"}
        if args.backend == "postgres":
            redis = stack.enter_context(running_redis(logs / "redis.log"))
            os.environ["REDIS_URL"] = env["REDIS_URL"] = redis.url  # read at Django's set-up
        else:
            os.environ.pop("REDIS_URL", None)  # the file-system broker under SIFT_VAR_DIR
        database_url = stack.enter_context(
            migrated_database(args.backend, args.postgres_url, args.database)
        )
        env["DATABASE_URL"] = database_url
        seed = argparse.Namespace(
            items=args.items,
            labeled=args.labeled,
            annotators=max(args.annotators),
            retrain_every=10,
        )
        started = time.perf_counter()
        project_id, user_ids, _ = seed_project_with_embeddings(seed)
        _log(f"seeded {args.items} items in {time.perf_counter() - started:.1f}s")
        web = stack.enter_context(
            running_gunicorn(
                env,
                logs / "gunicorn.log",
                workers=args.workers,
                threads=args.threads,
                access_log=False,
            )
        )
        # Before the worker starts, so that it does not train the imported projects.
        imports = _measure_imports(args, web)
        stack.enter_context(
            running_celery_worker(env, logs / "worker.log", timeout=120, stop_timeout=60)
        )
        _warm_up(project_id)
        keys = _tokens(user_ids)
        # Unmeasured: every gunicorn worker imports the API views on its first request.
        _run_phase(web, project_id, keys[: min(args.annotators)], seconds=5)
        phases = [_run_phase(web, project_id, keys[:n], args.seconds) for n in args.annotators]
    _report(args, phases, imports, command)
    return 1 if imports.failures or any(phase.failures for phase in phases) else 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each level")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--labeled", type=int, default=500, help="answers before the run")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (Dockerfile: 3)")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker")
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--database", default=BENCH_DATABASE, help="PostgreSQL database to use")
    parser.add_argument("--import-file", type=Path, default=AG_NEWS_TEST)
    parser.add_argument("--import-repeats", type=int, default=3)
    parser.add_argument("--against", help="git revision whose import_items to compare with")
    add_postgres_url(parser)
    return parser.parse_args()


def _ag_news_jsonl(path: Path) -> bytes:
    """AG News' CSV (class 1-4, title, description) as the JSONL the API takes."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [
            {"text": f"{title} {description}", "label": LABEL_NAMES[int(label) - 1]}
            for label, title, description in csv.reader(handle)
        ]
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def _measure_imports(args: argparse.Namespace, web: str) -> Imports:
    """Whole-file imports into fresh projects: over HTTP, then in process against REV; the
    retrains they ask for are dropped (the imported projects stay, untrained)."""
    from django.contrib.auth import get_user_model

    from labeling.importing import import_items
    from labeling.models import ApiToken, Project, Role
    from labeling.parsers import Columns

    body = _ag_news_jsonl(args.import_file)
    imports = Imports(rows=body.count(b"\n"))
    lead = get_user_model().objects.create(username="import-lead")
    session = http_session()
    session.headers["Authorization"] = f"Token {ApiToken.issue(lead, 'import bench')[1]}"
    session.headers["Content-Type"] = "application/x-ndjson"
    made: list[Project] = []

    def fresh_project() -> Project:
        project = Project.objects.create(name=f"Import {len(made)}")
        project.set_labels(LABEL_NAMES)
        project.add_member(lead, Role.LEAD)
        made.append(project)
        return project

    for _ in range(args.import_repeats):
        url = f"{web}/api/v1/projects/{fresh_project().pk}/items/"
        began = time.perf_counter()
        answer = session.post(url, data=body, timeout=300)
        imports.http_s.append(time.perf_counter() - began)
        if answer.status_code != 201 or answer.json()["imported"] != imports.rows:
            imports.failures.append(f"HTTP import: {answer.status_code} {answer.text[:200]}")
    if args.against:
        old = module_at_revision(args.against, "labeling/importing.py", "baseline_importing")
        sides: list[tuple[list[float], Callable[..., Any]]] = [
            (imports.this_checkout_s, import_items),
            (imports.against_s, old.import_items),
        ]
        for repeat in range(args.import_repeats):
            for timings, run in sides if repeat % 2 == 0 else reversed(sides):
                began = time.perf_counter()
                report = run(fresh_project(), io.BytesIO(body), "jsonl", Columns())
                timings.append(time.perf_counter() - began)
                if report.imported != imports.rows:
                    imports.failures.append(f"imported {report.imported} of {imports.rows}")
    # The imports asked for retrains, which a worker would resume when it starts: drop them.
    from config.celery import app
    from modeling.models import ModelState

    ModelState.objects.filter(project__in=made).delete()
    app.control.purge()
    _log(f"imports (s): HTTP {imports.http_s}, in process {imports.this_checkout_s}")
    _log(f"imports (s) of {args.against}: {imports.against_s}")
    return imports


def _warm_up(project_id: int) -> None:
    """One retrain first, so the worker holds the embeddings before anything is measured."""
    from labeling.models import Project
    from modeling.models import ModelVersion
    from modeling.scheduling import request_retrain

    started = time.perf_counter()
    request_retrain(Project.objects.get(pk=project_id))
    wait_for(
        lambda: ModelVersion.objects.filter(project_id=project_id).exists(), 300, "first model"
    )
    _log(f"first retrain in the worker: {time.perf_counter() - started:.1f}s")


def _tokens(user_ids: list[int]) -> list[str]:
    from django.contrib.auth import get_user_model

    from labeling.models import ApiToken

    users = get_user_model().objects.in_bulk(user_ids)
    return [ApiToken.issue(users[user_id], "load bench")[1] for user_id in user_ids]


def _run_phase(web: str, project_id: int, keys: list[str], seconds: float) -> Phase:
    from modeling.models import ModelVersion

    phase = Phase(len(keys))
    lock = threading.Lock()
    stop = threading.Event()
    ready = threading.Barrier(len(keys) + 1)
    acknowledged: list[tuple[str, int]] = []
    api = f"{web}/api/v1/projects/{project_id}"

    def annotate(key: str, offset: int) -> None:
        session = http_session()
        session.headers["Authorization"] = f"Token {key}"
        session.get(f"{web}/health/", timeout=30)  # opens the keep-alive connection
        ready.wait()
        round_number = 0
        while not stop.is_set():
            began = time.perf_counter()
            served = session.get(f"{api}/queue/next/", timeout=60)
            leased = time.perf_counter()
            if served.status_code != 200:
                with lock:
                    phase.failures.append(f"next-item answered {served.status_code}")
                return
            item = served.json()["item"]["id"]
            label = LABEL_NAMES[(offset + round_number) % len(LABEL_NAMES)]
            answer = {"item": item, "labels": [label], "client_id": str(uuid.uuid4())}
            stored = session.post(f"{api}/annotations/", json=answer, timeout=60)
            done = time.perf_counter()
            round_number += 1
            with lock:
                if stored.status_code != 201:
                    phase.failures.append(f"submit answered {stored.status_code}")
                    return
                phase.next_ms.append((leased - began) * 1000)
                phase.submit_ms.append((done - leased) * 1000)
                acknowledged.append((answer["client_id"], item))

    threads = start_annotators(annotate, keys, daemon=True)
    versions_before = ModelVersion.objects.filter(project_id=project_id).count()
    ready.wait()
    began, cpu_before = time.perf_counter(), _web_cpu_seconds()
    time.sleep(seconds)  # the phase's length, not a synchronization
    stop.set()
    for thread in threads:
        thread.join()
    phase.wall_s = time.perf_counter() - began
    phase.web_cpu_s = _web_cpu_seconds() - cpu_before
    phase.retrains = ModelVersion.objects.filter(project_id=project_id).count() - versions_before
    phase.acknowledged = len(acknowledged)
    phase.failures += _missing_answers(acknowledged)
    _log(
        f"{len(keys)} annotators: {len(phase.next_ms)} rounds in {phase.wall_s:.1f}s, "
        f"{phase.retrains} retrains"
    )
    return phase


def _web_cpu_seconds() -> float:
    """CPU time the gunicorn processes (this script's child and its workers) have used."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for child in children_of(os.getpid()):
        if b"gunicorn" not in Path(f"/proc/{child}/cmdline").read_bytes():
            continue
        for pid in [child, *children_of(child)]:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _missing_answers(acknowledged: list[tuple[str, int]]) -> list[str]:
    from labeling.models import Annotation

    stored = set(
        Annotation.objects.filter(client_id__in=[uuid.UUID(c) for c, _ in acknowledged])
        .values_list("client_id", "item_id")
        .iterator()
    )
    wanted = {(uuid.UUID(c), item) for c, item in acknowledged}
    missing = wanted - stored
    return [f"{len(missing)} acknowledged answers are not in the database"] if missing else []


def _report(args: argparse.Namespace, phases: list[Phase], imports: Imports, command: str) -> None:
    database = {"postgres": "PostgreSQL + Redis", "sqlite": "SQLite + file-system broker"}
    print()
    print(
        f"{args.items} items, gunicorn {args.workers} workers x {args.threads} threads, "
        f"{database[args.backend]}, a Celery worker retraining every 10 answers, "
        f"{os.cpu_count()} CPUs"
    )
    print()
    print(
        "| annotators | rounds | next-item p50 ms | next-item p99 ms | submit p50 ms "
        "| submit p99 ms | requests/s | answers/s | web CPU ms/request | retrains | check |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for p in phases:
        answers_per_s = len(p.next_ms) / p.wall_s if p.wall_s else 0.0
        print(
            f"| {p.annotators} | {len(p.next_ms)} | {format_ms(percentile(p.next_ms, 50))} "
            f"| {format_ms(percentile(p.next_ms, 99))} | {format_ms(percentile(p.submit_ms, 50))} "
            f"| {format_ms(percentile(p.submit_ms, 99))} | {2 * answers_per_s:.1f} "
            f"| {answers_per_s:.1f} | {1000 * p.web_cpu_s / max(1, 2 * len(p.next_ms)):.1f} "
            f"| {p.retrains} | {'FAIL' if p.failures else 'OK'} |"
        )
    print()
    print("| import, one call | rows | median s | rows/s |")
    print("|---|---:|---:|---:|")
    sides = [
        ("over HTTP (gunicorn)", imports.http_s),
        ("in process, this checkout", imports.this_checkout_s),
        (f"in process, {args.against}", imports.against_s),
    ]
    for name, seconds in sides:
        if seconds:
            median = statistics.median(seconds)
            print(f"| {name} | {imports.rows} | {median:.2f} | {imports.rows / median:,.0f} |")
    if imports.this_checkout_s and imports.against_s:
        ratio = statistics.median(imports.against_s) / statistics.median(imports.this_checkout_s)
        print(f"\nimport speed, this checkout / {args.against}: {ratio:.2f}x")
    print()
    print(command)
    for failure in imports.failures[:10]:
        print(f"FAIL import: {failure}")
    for p in phases:
        for failure in p.failures[:10]:
            print(f"FAIL {p.annotators} annotators: {failure}")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
