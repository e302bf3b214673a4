"""A scripted annotator labels AG News through the live queue; is the labels-saved estimate true?

The dashboard estimates how many labels active learning saved from the random-control items
alone (modeling/labels_saved.py). This run checks that estimate against the truth:

1. AG News (train_sample_5k) is imported into a fresh PostgreSQL project WITHOUT its labels.
2. A real Celery worker keeps the model current (retrain every 10 answers) while a scripted
   annotator takes items from the live queue, one after the other, and answers each with its
   true label. A tenth of the items are the random control, as for real annotators.
3. At the end, the latest version's live estimate (with its band) is compared with the true
   figure: random sampling's learning curve on the same pool, measured with real labels on
   AG News' own test set (7,600 items), inverted at the live model's accuracy on that test
   set, minus the labels the live model used.

    .venv/bin/python bench/scripted_annotator.py [--answers 525] [--pause 0.2]

Needs ../shared/datasets, PostgreSQL and Redis (redis db 7). Prints a table and writes
var/bench/scripted_annotator.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import REPO_ROOT, fresh_database, setup_django

DATASETS = REPO_ROOT.parent / "shared" / "datasets" / "ag_news"
TRAIN = DATASETS / "train_sample_5k" / "train_sample.csv"
TEST = DATASETS / "test.csv"
CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
BENCH_DATABASE = "sift_bench_scripted"


def main() -> int:
    args = _parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")
    os.environ["REDIS_URL"] = args.redis_url
    with fresh_database("postgres", args.postgres_url, BENCH_DATABASE) as database_url:
        setup_django(database_url)
        from django.core.management import call_command
        from django.db import connections

        try:
            call_command("migrate", interactive=False, verbosity=0)
            result = _run(args)
        finally:
            connections.close_all()
    out = REPO_ROOT / "var" / "bench" / "scripted_annotator.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {out.relative_to(REPO_ROOT)}")
    return 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=525, help="answers the annotator gives")
    parser.add_argument(
        "--pause", type=float, default=0.2, help="seconds between answers (a fast human)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="random-sampling runs to average")
    parser.add_argument(
        "--control-share", type=float, default=0.1, help="the project's random-control share"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument(
        "--postgres-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="maintenance database used to create and drop the bench database",
    )
    return parser.parse_args()


def _run(args: argparse.Namespace) -> dict[str, object]:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from labeling.importing import import_items
    from labeling.models import Item, Project, Role
    from labeling.parsers import Columns
    from labeling.queue import lease_next_item
    from labeling.services import resolve_labels, submit_answer
    from modeling.datasets import load_labeled
    from modeling.models import ModelState, ModelVersion
    from modeling.scheduling import request_retrain
    from tests.worker import running_worker, wait_for

    train = load_labeled(TRAIN.open("rb"), "csv", Columns(["1"], "2", has_header=False))
    truth = {
        text: CLASSES[int(label)] for text, label in zip(train.texts, train.labels, strict=True)
    }
    users = get_user_model().objects
    lead = users.create_user("lead")
    annotator = users.create_user("annotator")
    project = Project.objects.create(
        name="AG News", retrain_every=10, random_control_share=args.control_share
    )
    project.set_labels(CLASSES)
    project.add_member(lead, Role.LEAD)
    project.add_member(annotator, Role.ANNOTATOR)
    unlabeled = "\n".join(json.dumps({"text": text}) for text in truth).encode()
    report = import_items(project, io.BytesIO(unlabeled), "jsonl", Columns(["text"]))
    _log(f"imported {report.imported} items without labels")

    log_path = Path(settings.VAR_DIR) / "scripted-worker.log"
    served_by_version: dict[int, int] = {}
    # The worker runs at normal priority: this measures the loop, not sharing with a web app.
    with running_worker(log_path, extra_env={"SIFT_WORKER_NICENESS": "0"}):
        request_retrain(project)
        wait_for(
            lambda: ModelState.objects.filter(
                project=project, queue_refreshed_at__isnull=False
            ).exists(),
            3600,
            "the first embedding and cold-start queue",
        )
        _log("embedded the pool; labeling starts")
        started = time.perf_counter()
        for answered in range(args.answers):
            item = lease_next_item(project, annotator)
            assert item is not None, "the queue ran dry"
            entry = getattr(item, "queue_entry", None)
            version = entry.model_version if entry is not None else -1
            served_by_version[version] = served_by_version.get(version, 0) + 1
            labels = resolve_labels(project, [truth[item.text]])
            submit_answer(project, annotator, item, labels, seconds_spent=args.pause)
            time.sleep(args.pause)
            if (answered + 1) % 100 == 0:
                _log(f"{answered + 1} answers, {time.perf_counter() - started:.0f}s")
        controls = Item.objects.filter(project=project, is_random_control=True).count()
        request_retrain(project)

        def trained_on_everything() -> bool:
            latest = ModelVersion.objects.filter(project=project).first()
            state = ModelState.objects.get(project=project)
            return (
                latest is not None
                and latest.labels_used == args.answers - controls
                and not state.is_running()
                and state.queued_at is None
            )

        wait_for(trained_on_everything, 1800, "the last retrain")
    latest = ModelVersion.objects.filter(project=project).first()
    assert latest is not None
    versions = ModelVersion.objects.filter(project=project).count()
    live = latest.metrics.get("labels_saved", {})
    evaluation = latest.metrics.get("evaluation", {})
    truth_figure = _true_labels_saved(project, truth, latest.labels_used, args.repeats)
    return {
        "answers": args.answers,
        "control_share": args.control_share,
        "random_control_items": controls,
        "model_versions": versions,
        "items_served_per_model_version": {str(k): v for k, v in sorted(served_by_version.items())},
        "labels_used": latest.labels_used,
        "live_control_accuracy": evaluation.get("accuracy"),
        "live_control_accuracy_ci": evaluation.get("accuracy_ci"),
        "live_labels_saved": live.get("estimate"),
        "live_labels_saved_band": [live.get("low"), live.get("high")],
        "live_reason": live.get("reason", ""),
        **truth_figure,
    }


def _true_labels_saved(
    project: object, truth: dict[str, str], labels_used: int, repeats: int
) -> dict[str, object]:
    """Random sampling's real learning curve on this pool, inverted at the live model's accuracy."""
    from django.conf import settings

    from labeling.models import Project
    from labeling.parsers import Columns
    from modeling.classifiers import HeadClassifier
    from modeling.datasets import embed_cached, load_labeled
    from modeling.encoders import TextEncoder, default_encoder_path
    from modeling.labels_saved import labels_to_reach
    from modeling.services import encoder_name, load_embeddings, training_set
    from modeling.simulation import run_simulation
    from modeling.simulation_report import mean_curve

    assert isinstance(project, Project)
    ids, vectors = load_embeddings(project, encoder_name(project))
    texts = dict(project.items.values_list("pk", "text"))
    pool_y = np.array([CLASSES.index(truth[texts[int(pk)]]) for pk in ids])
    test = load_labeled(TEST.open("rb"), "csv", Columns(["2", "3"], "1", has_header=False))
    test_y = np.array([int(label) - 1 for label in test.labels])
    cache = Path(settings.VAR_DIR) / "cache" / "embeddings"
    test_vectors, _ = embed_cached(TextEncoder(default_encoder_path()), test.texts, cache)

    labels = list(project.labels.all())
    training = training_set(project, labels)
    row_of = {int(pk): row for row, pk in enumerate(ids)}
    rows = np.array([row_of[pk] for pk in training.item_ids])
    live_model = HeadClassifier(len(labels)).fit(vectors[rows], training.targets)
    live_test_accuracy = float(np.mean(live_model.predict_proba(test_vectors).argmax(1) == test_y))

    budget = 2500
    curves = [
        run_simulation(
            vectors,
            pool_y,
            test_vectors,
            test_y,
            len(CLASSES),
            "random",
            seed_size=25,
            batch_size=25,
            budget=budget,
            seed=seed,
        )
        for seed in range(repeats)
    ]
    sizes, mean = mean_curve(curves)
    needed = labels_to_reach(sizes, mean, live_test_accuracy)
    return {
        "live_model_test_accuracy": live_test_accuracy,
        "random_accuracy_at_labels_used": float(np.interp(labels_used, sizes, mean)),
        "random_labels_for_live_accuracy": None if needed is None else round(needed),
        "true_labels_saved": None if needed is None else round(needed) - labels_used,
        "true_figure_method": (
            f"random sampling on the same {len(pool_y)}-item pool, {repeats} runs, accuracy on "
            f"AG News test.csv ({len(test_y)} items), curve inverted by linear interpolation"
        ),
    }


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}")


if __name__ == "__main__":
    raise SystemExit(main())
