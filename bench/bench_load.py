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

    .venv/bin/python bench/bench_load.py
    .venv/bin/python bench/bench_load.py --annotators 8 32 64 --seconds 30 --items 20000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

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


def main() -> int:
    args = _parse_args()
    command = announce()
    with ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sift-load-")))
        redis = stack.enter_context(running_redis(logs / "redis.log"))
        os.environ["REDIS_URL"] = redis.url  # read once, when migrated_database sets Django up
        database_url = stack.enter_context(
            migrated_database("postgres", args.postgres_url, BENCH_DATABASE)
        )
        seed = argparse.Namespace(
            items=args.items,
            labeled=args.labeled,
            annotators=max(args.annotators),
            retrain_every=10,
        )
        started = time.perf_counter()
        project_id, user_ids, _ = seed_project_with_embeddings(seed)
        _log(f"seeded {args.items} items in {time.perf_counter() - started:.1f}s")
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis.url,
            "SECRET_KEY": "bench-only-secret",
            "LOG_LEVEL": "WARNING",
        }
        stack.enter_context(
            running_celery_worker(env, logs / "worker.log", timeout=120, stop_timeout=60)
        )
        _warm_up(project_id)
        web = stack.enter_context(
            running_gunicorn(
                env,
                logs / "gunicorn.log",
                workers=args.workers,
                threads=args.threads,
                access_log=False,
            )
        )
        keys = _tokens(user_ids)
        # Unmeasured: every gunicorn worker imports the API views on its first request.
        _run_phase(web, project_id, keys[: min(args.annotators)], seconds=5)
        phases = [_run_phase(web, project_id, keys[:n], args.seconds) for n in args.annotators]
    _report(args, phases, command)
    return 1 if any(phase.failures for phase in phases) else 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each level")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--labeled", type=int, default=500, help="answers before the run")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (Dockerfile: 3)")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker")
    add_postgres_url(parser)
    return parser.parse_args()


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


def _report(args: argparse.Namespace, phases: list[Phase], command: str) -> None:
    print()
    print(
        f"{args.items} items, gunicorn {args.workers} workers x {args.threads} threads, "
        f"PostgreSQL, a Celery worker retraining every 10 answers, {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| annotators | rounds | next-item p50 ms | next-item p99 ms | submit p50 ms "
        "| submit p99 ms | requests/s | web CPU ms/request | retrains | check |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for p in phases:
        requests_per_s = 2 * len(p.next_ms) / p.wall_s if p.wall_s else 0.0
        print(
            f"| {p.annotators} | {len(p.next_ms)} | {format_ms(percentile(p.next_ms, 50))} "
            f"| {format_ms(percentile(p.next_ms, 99))} | {format_ms(percentile(p.submit_ms, 50))} "
            f"| {format_ms(percentile(p.submit_ms, 99))} | {requests_per_s:.1f} "
            f"| {1000 * p.web_cpu_s / max(1, 2 * len(p.next_ms)):.1f} | {p.retrains} "
            f"| {'FAIL' if p.failures else 'OK'} |"
        )
    print()
    print(command)
    for p in phases:
        for failure in p.failures[:10]:
            print(f"FAIL {p.annotators} annotators: {failure}")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
