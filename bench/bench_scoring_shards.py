"""Scoring a promoted fine-tune's pool in shards: 1 worker against 2 on a 20,000-item pool.

A project of real texts (AG News and Banking77 from ../shared/datasets) with 100 AG News
labels is fine-tuned once in this process (a short run: the bench measures scoring, not the
model). Then, for each worker count, the version's adapted-space embeddings and its queue
are dropped and ``rescore_pool`` sends the shards (``--shard-items`` each) to the fine-tuning
queue, where that many real ``celery worker -Q gpu`` processes wait, started beforehand and
ready, each at ``--threads`` torch threads. The time is from sending the shards to the queue
written by the last one: re-embedding every item with the fine-tuned encoder, scoring, the
fan-in and the ranking. Each worker's log says how many shards it took.

    .venv/bin/python bench/bench_scoring_shards.py --items 20000 --workers 1 2

Needs PostgreSQL and Redis (``--postgres-url``, ``REDIS_URL``, default redis://127.0.0.1:6379/14).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import REPO_ROOT, add_postgres_url, announce, migrated_database

DATASETS = REPO_ROOT.parent / "shared" / "datasets"
AG_CLASSES = ("World", "Sports", "Business", "Sci/Tech")
SHARD_TIME = re.compile(r"shard \d+/\d+ of v\d+ scored in ([\d.]+) s")
RANKING_TIME = re.compile(r"ranked a pool of \d+ in ([\d.]+) s")


def _texts(count: int, labeled: int) -> list[dict[str, str]]:
    """``count`` distinct real texts; the first ``labeled`` AG News ones carry their label."""
    rows: list[dict[str, str]] = []
    seen: set[str] = set()

    def add(text: str, label: str = "") -> None:
        if text and text not in seen and len(rows) < count:
            seen.add(text)
            rows.append({"text": text, **({"label": label} if label else {})})

    with (DATASETS / "ag_news" / "train_sample_5k" / "train_sample.csv").open() as stream:
        for n, (text, label) in enumerate(csv.reader(stream)):
            add(text, AG_CLASSES[int(label)] if n < labeled else "")
    with (DATASETS / "ag_news" / "test.csv").open() as stream:
        for _, title, body in csv.reader(stream):
            add(f"{title}. {body}")
    for name in ("train.csv", "test.csv"):
        with (DATASETS / "banking77" / name).open() as stream:
            for row in csv.DictReader(stream):
                add(row["text"])
    if len(rows) < count:
        raise SystemExit(f"only {len(rows)} distinct texts in {DATASETS}; ask for fewer --items")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shard-items", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    add_postgres_url(parser)
    args = parser.parse_args()
    announce()
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
    os.environ["SIFT_SCORING_SHARD_ITEMS"] = str(args.shard_items)
    os.environ["SIFT_FINETUNE_MIN_STEPS"] = "4"  # a short fine-tune: scoring is measured
    os.environ["SIFT_AUTO_FINETUNE"] = "0"
    with migrated_database("postgres", args.postgres_url, "sift_bench_shards"):
        results = _run(args)
    print(json.dumps(results))
    return 0


def _run(args: argparse.Namespace) -> dict[str, object]:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from config.celery import app
    from labeling.importing import import_items
    from labeling.models import Project, QueueEntry, Role
    from labeling.parsers import Columns
    from modeling.models import EmbeddingChunk, ScoringShard
    from modeling.services import finetune as finetune_service
    from modeling.services import rescoring
    from tests.worker import running_worker, wait_for

    lead = get_user_model().objects.create_user("lead")
    project = Project.objects.create(name="Shards")
    project.set_labels(list(AG_CLASSES))
    project.add_member(lead, Role.LEAD)
    rows = _texts(args.items, args.labels)
    body = "\n".join(json.dumps(row) for row in rows).encode()
    report = import_items(project, io.BytesIO(body), "jsonl", Columns(["text"], label="label"))
    print(f"imported {report.imported} items, {report.labeled} labeled")

    started = time.perf_counter()
    version = finetune_service.finetune(project.pk, "bench-shards")
    if version is None or not version.promoted:
        raise SystemExit("the fine-tune made no promoted version")
    print(f"fine-tuned v{version.number} in {time.perf_counter() - started:.0f} s (not timed)")
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(settings.SIFT_FINETUNE_QUEUE)

    figures: dict[str, object] = {"items": args.items, "shard_items": args.shard_items}
    log_dir = Path(settings.VAR_DIR)
    for workers in args.workers:
        ScoringShard.objects.filter(project=project).delete()
        EmbeddingChunk.objects.filter(project=project, encoder__contains="+finetune-").delete()
        QueueEntry.objects.filter(project=project).delete()
        env = {
            "SIFT_WORKER_NICENESS": "0",
            "LOG_LEVEL": "INFO",  # the shards' and the ranking's times
            "OMP_NUM_THREADS": str(args.threads),
            "MKL_NUM_THREADS": str(args.threads),
        }
        logs = [log_dir / f"shard-worker-{workers}-{n}.log" for n in range(workers)]
        with ExitStack() as stack:
            for log in logs:  # each ready before the next starts: start-up is not timed
                stack.enter_context(
                    running_worker(
                        log, queues=settings.SIFT_FINETUNE_QUEUE, extra_env=env, purge=False
                    )
                )
            started = time.perf_counter()
            rescoring.rescore_pool(project.pk, version.number)
            wait_for(
                lambda: QueueEntry.objects.filter(
                    project=project, model_version=version.number
                ).exists(),
                3600,
                "the queue ranked by the fine-tuned version",
            )
            seconds = time.perf_counter() - started
        texts = [log.read_text() for log in logs]
        taken = [text.count("score_shard[") // 2 for text in texts]
        shard_seconds = [float(s) for text in texts for s in SHARD_TIME.findall(text)]
        ranking = [float(s) for text in texts for s in RANKING_TIME.findall(text)]
        print(
            f"{workers} worker(s): {seconds:.1f} s, shards per worker {taken}; "
            f"each shard {', '.join(f'{s:.1f}' for s in shard_seconds)} s; "
            f"the last one's ranking {', '.join(f'{s:.1f}' for s in ranking)} s"
        )
        figures[f"{workers}_workers"] = {
            "seconds": round(seconds, 1),
            "shards_per_worker": taken,
            "shard_seconds": shard_seconds,
            "ranking_seconds": ranking,
        }
    if "1_workers" in figures and "2_workers" in figures:
        one = figures["1_workers"]["seconds"]  # type: ignore[index]
        two = figures["2_workers"]["seconds"]  # type: ignore[index]
        figures["speed-up"] = round(one / two, 2)
        print(f"2 workers: {one / two:.2f}x the speed of 1")
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
