"""Next item and submit while a CPU fine-tune runs beside the web app, against while it does not.

The annotator's requests and a fine-tune share this machine's cores, as on `make run`. This
seeds a PostgreSQL project the way bench_retrain.py does, starts a fine-tune of MiniLM in a
process of its own (looping over synthetic texts, at the niceness a worker runs it at), and
times `lease_next_item` + `submit_answer` in interleaved blocks: the fine-tune paused
(SIGSTOP) or running (SIGCONT). The ratio of the two is what a fine-tune costs an annotator.

    .venv/bin/python bench/bench_busy_worker.py --niceness 10 19

`make run`'s fine-tune worker runs at 19 (nice 10 on top of every worker's 10); before it had a
worker of its own, fine-tunes ran in the one worker, at 10.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from bench_retrain import _seed  # bench/ is on sys.path when run as a script
from harness import add_postgres_url, announce, migrated_database, percentile

BENCH_DATABASE = "sift_bench_busy_worker"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--blocks", type=int, default=8, help="blocks of 25 rounds per side")
    parser.add_argument("--niceness", type=int, nargs="+", default=[19])
    parser.add_argument("--fine-tune-forever", action="store_true", help=argparse.SUPPRESS)
    add_postgres_url(parser)
    args = parser.parse_args()
    if args.fine_tune_forever:
        return _fine_tune_forever()
    announce()
    seed_args = argparse.Namespace(items=args.items, labeled=500, retrain_every=10, annotators=1)
    with migrated_database("postgres", args.postgres_url, BENCH_DATABASE):
        project_id, user_ids, _ = _seed(seed_args)
        for niceness in args.niceness:
            _report(args, niceness, _measure(args, project_id, user_ids[0], niceness))
    return 0


def _fine_tune_forever() -> int:
    """The background load: fine-tune runs over 256 texts, one after the other, until killed."""
    import numpy as np

    from modeling.core.finetuning import FineTuneConfig, FineTunedClassifier

    rng = np.random.default_rng(0)
    words = ["market", "match", "goal", "stock", "vote", "team", "bank", "rain", "court", "chip"]
    texts = np.array([" ".join(rng.choice(words, size=30)) for _ in range(256)], dtype=object)
    y = rng.integers(0, 4, size=256)
    config = FineTuneConfig(device="cpu", epochs=1, min_steps=0, validation_fraction=0.0)
    print("fine-tuning", flush=True)
    while True:
        FineTunedClassifier(4, config=config).fit(texts, y)


def _measure(
    args: argparse.Namespace, project_id: int, user_id: int, niceness: int
) -> dict[str, list[float]]:
    from django.contrib.auth import get_user_model

    import labeling.queue
    from labeling.models import Project
    from labeling.queue import lease_next_item
    from labeling.services import resolve_labels, submit_answer

    labeling.queue._draw = lambda: 1.0  # the queue, every time
    project = Project.objects.get(pk=project_id)
    project.retrain_every = 10**9  # in memory only: no retrain is requested by the answers
    annotator = get_user_model().objects.get(pk=user_id)
    label = resolve_labels(project, ["world"])
    trainer = _start_trainer(niceness)
    timings: dict[str, list[float]] = {"paused": [], "fine-tuning": []}
    try:
        for block in range(args.blocks * 2):
            side = "fine-tuning" if block % 2 else "paused"
            os.kill(trainer.pid, signal.SIGCONT if side == "fine-tuning" else signal.SIGSTOP)
            time.sleep(1.0)  # let the scheduler see the new load
            for _ in range(25):
                began = time.perf_counter()
                item = lease_next_item(project, annotator)
                assert item is not None
                submit_answer(project, annotator, item, label, seconds_spent=1.0)
                timings[side].append((time.perf_counter() - began) * 1000)
    finally:
        trainer.kill()
        trainer.wait()
    return timings


def _start_trainer(niceness: int) -> subprocess.Popen[bytes]:
    trainer = subprocess.Popen(
        [sys.executable, __file__, "--fine-tune-forever"],
        stdout=subprocess.PIPE,
        preexec_fn=lambda: os.nice(niceness),
    )
    assert trainer.stdout is not None
    trainer.stdout.readline()  # the model is loaded: training starts now
    return trainer


def _report(args: argparse.Namespace, niceness: int, timings: dict[str, Any]) -> None:
    print(f"\nFine-tune at niceness {niceness}; {args.items} items, {args.blocks} blocks of 25")
    print("| fine-tune | rounds | next item + submit p50 ms | p95 ms |")
    print("|---|---:|---:|---:|")
    for side, samples in timings.items():
        print(
            f"| {side} | {len(samples)} | {statistics.median(samples):.1f} "
            f"| {percentile(samples, 95) or 0:.1f} |"
        )
    ratio = statistics.median(timings["fine-tuning"]) / statistics.median(timings["paused"])
    print(f"p50 while fine-tuning / paused: {ratio:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
