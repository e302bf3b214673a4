"""A scripted annotator labels a dataset through the live queue; is the labels-saved estimate true?

The dashboard estimates how many labels active learning saved from the random-control items
alone (modeling/core/labels_saved.py). This run checks that estimate against the truth:

1. The dataset's training file (AG News: train_sample_5k; Banking77: train.csv, 10,003 items,
   77 intents) is imported into a fresh PostgreSQL project WITHOUT its labels.
2. A real Celery worker keeps the model current (retrain every 10 answers) while a scripted
   annotator takes items from the live queue, one after the other, and answers each with its
   true label. A share of the items (--control-share, a tenth by default) is the random
   control, as for real annotators.
3. At the end, the latest version's live estimate (with its band) is compared with the true
   figure: random sampling's learning curve on the same pool, measured with real labels on
   the dataset's own test set (AG News: 7,600 items; Banking77: 3,080), inverted at the live
   model's accuracy on that test set, minus the labels the live model used. The curve runs
   on, up to the whole pool, until random sampling reaches that accuracy.

    .venv/bin/python bench/scripted_annotator.py [--dataset ag_news] [--answers 525] \
        [--control-share 0.1]

Needs ../shared/datasets, PostgreSQL and Redis (redis db 7; give each of two runs side by side
its own --redis-url and --out). Prints a table and writes var/bench/scripted_annotator.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import REPO_ROOT, add_postgres_url, announce, migrated_database
from labeling.parsers import Columns

if TYPE_CHECKING:
    from modeling.core.simulation import CurvePoint

SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"
BENCH_DATABASE = "sift_bench_scripted"


@dataclass(frozen=True)
class Dataset:
    """A labeled dataset under ../shared/datasets: its files, their columns, its classes."""

    title: str
    train: Path
    train_columns: Columns
    test: Path
    test_columns: Columns
    classes: list[str]
    # The class name of a label as each file writes it.
    train_class: Callable[[str], str]
    test_class: Callable[[str], str]


def _ag_news() -> Dataset:
    folder = SHARED_DATASETS / "ag_news"
    classes = ["World", "Sports", "Business", "Sci/Tech"]
    return Dataset(
        title="AG News",
        train=folder / "train_sample_5k" / "train_sample.csv",
        train_columns=Columns(["1"], "2", has_header=False),
        test=folder / "test.csv",
        test_columns=Columns(["2", "3"], "1", has_header=False),
        classes=classes,
        # The sample numbers the classes from 0, the original test set from 1.
        train_class=lambda label: classes[int(label)],
        test_class=lambda label: classes[int(label) - 1],
    )


def _banking77() -> Dataset:
    folder = SHARED_DATASETS / "banking77"
    return Dataset(
        title="Banking77",
        train=folder / "train.csv",
        train_columns=Columns(["text"], "category"),
        test=folder / "test.csv",
        test_columns=Columns(["text"], "category"),
        classes=json.loads((folder / "categories.json").read_text()),
        train_class=str,
        test_class=str,
    )


DATASETS: dict[str, Callable[[], Dataset]] = {"ag_news": _ag_news, "banking77": _banking77}


def main() -> int:
    args = _parse_args()
    announce()
    os.environ["REDIS_URL"] = args.redis_url
    database = f"{BENCH_DATABASE}_{os.getpid()}"  # two runs side by side do not collide
    with migrated_database("postgres", args.postgres_url, database, keep=args.keep) as database_url:
        result = _run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {out}")
    if args.keep:
        print(f"database kept: DATABASE_URL={database_url} (drop it when done)")
    return 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="ag_news")
    parser.add_argument("--answers", type=int, default=525, help="answers the annotator gives")
    parser.add_argument(
        "--pause", type=float, default=0.2, help="seconds between answers (a fast human)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="random-sampling runs to average")
    parser.add_argument(
        "--control-share", type=float, default=0.1, help="the project's random-control share"
    )
    parser.add_argument(
        "--finetune",
        action="store_true",
        help="the live loop with automatic fine-tunes: a second worker on the fine-tuning queue "
        "(as make run starts), the project's default fine-tune cadence; reports each fine-tune "
        "and the head retrains that ran meanwhile (no labels-saved truth: spaces change)",
    )
    parser.add_argument(
        "--no-truth",
        action="store_true",
        help="skip random sampling's true curve (it embeds the test set); the live figures and "
        "how often the suggestions annotators were shown were right still come out",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the database (its URL is printed): serve it with manage.py and log in as "
        "lead / lead to see the dashboard of the run",
    )
    parser.add_argument(
        "--out",
        default=str(REPO_ROOT / "var" / "bench" / "scripted_annotator.json"),
        help="where the result goes",
    )
    add_postgres_url(parser)
    return parser.parse_args()


def _run(args: argparse.Namespace) -> dict[str, object]:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from labeling.importing import import_items
    from labeling.models import Item, Project, Role
    from labeling.queue import lease_next_item, suggestion_to_show
    from labeling.services import resolve_labels, submit_answer
    from modeling.datasets import load_labeled
    from modeling.models import ModelState, ModelVersion
    from modeling.scheduling import request_retrain
    from tests.worker import running_worker, wait_for

    dataset = DATASETS[args.dataset]()
    with dataset.train.open("rb") as stream:
        train = load_labeled(stream, "csv", dataset.train_columns)
    truth = {
        text: dataset.train_class(label)
        for text, label in zip(train.texts, train.labels, strict=True)
    }
    users = get_user_model().objects
    # The lead's password lets a --keep run's dashboard be opened in a browser afterwards.
    lead = users.create_user("lead", password="lead")
    annotator = users.create_user("annotator")
    project = Project.objects.create(
        name=dataset.title, retrain_every=10, random_control_share=args.control_share
    )
    project.set_labels(dataset.classes)
    project.add_member(lead, Role.LEAD)
    project.add_member(annotator, Role.ANNOTATOR)
    unlabeled = "\n".join(json.dumps({"text": text}) for text in truth).encode()
    report = import_items(project, io.BytesIO(unlabeled), "jsonl", Columns(["text"]))
    _log(f"imported {report.imported} items without labels")

    log_path = Path(settings.VAR_DIR) / "scripted-worker.log"
    served_by_version: dict[int, int] = {}
    # The worker runs at normal priority: this measures the loop, not sharing with a web app.
    finetuner = (
        running_worker(
            log_path.with_name("scripted-finetune-worker.log"),
            queues="gpu",
            extra_env={"SIFT_WORKER_NICENESS": "10"},
        )
        if args.finetune
        else contextlib.nullcontext()
    )
    queues = "celery" if args.finetune else None
    with (
        running_worker(log_path, queues=queues, extra_env={"SIFT_WORKER_NICENESS": "0"}),
        finetuner,
    ):
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
        # Whether each suggestion was right, by whether the label page showed it.
        # Also split by how the item was picked (by the model, or drawn as a random control).
        suggestions: dict[str, list[bool]] = {
            f"{kind}{picked}": []
            for kind in ("shown", "hidden")
            for picked in ("", "_on_picked", "_on_controls")
        }
        for answered in range(args.answers):
            item = lease_next_item(project, annotator)
            assert item is not None, "the queue ran dry"
            entry = getattr(item, "queue_entry", None)
            version = entry.model_version if entry is not None else -1
            served_by_version[version] = served_by_version.get(version, 0) + 1
            suggestion = suggestion_to_show(project, item)
            if suggestion is not None:
                right = [label.name for label in suggestion.labels] == [truth[item.text]]
                kind = "shown" if suggestion.shown else "hidden"
                picked = "_on_controls" if item.is_random_control else "_on_picked"
                suggestions[kind].append(right)
                suggestions[kind + picked].append(right)
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
        if args.finetune:
            # The fine-tune under way (a follow-up it queues is left to wait), then one more
            # head retrain, which works in the space of the last promoted fine-tune.
            wait_for(
                lambda: not project.finetune_runs.filter(status="running").exists(),
                3600,
                "the fine-tune under way",
            )
            project.finetune_runs.filter(status="queued").update(status="cancelled")
            last = ModelVersion.objects.filter(project=project).first()
            assert last is not None
            request_retrain(project)
            wait_for(
                lambda: project.model_versions.filter(kind="head", number__gt=last.number).exists(),
                1800,
                "a head retrain after the last fine-tune",
            )
    if args.finetune:
        return {
            "dataset": args.dataset,
            "answers": args.answers,
            "items_served_per_model_version": {
                str(k): v for k, v in sorted(served_by_version.items())
            },
            **_fine_tunes_and_retrains(project),
        }
    latest = ModelVersion.objects.filter(project=project).first()
    assert latest is not None
    versions = ModelVersion.objects.filter(project=project).count()
    live = latest.metrics.get("labels_saved", {})
    evaluation = latest.metrics.get("evaluation", {})
    truth_figure = (
        {}
        if args.no_truth
        else _true_labels_saved(project, dataset, truth, latest.labels_used, args.repeats)
    )
    return {
        "dataset": args.dataset,
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
        "live_labels_saved_is_lower_bound": live.get("at_least", False),
        "live_reason": live.get("reason", ""),
        "live_curve_measured_on": live.get("measured_on"),
        **_suggestion_figures(suggestions),
        **truth_figure,
    }


def _suggestion_figures(suggestions: dict[str, list[bool]]) -> dict[str, object]:
    """How often the suggestions the label page showed (and those it hid) were right."""
    figures: dict[str, object] = {}
    for kind, rights in suggestions.items():
        figures[f"suggestions_{kind}"] = len(rights)
        figures[f"suggestions_{kind}_right"] = sum(rights) / len(rights) if rights else None
    return figures


def _fine_tunes_and_retrains(project: object) -> dict[str, object]:
    """Each fine-tune (labels, seconds, accuracy, promoted) and the head retrains that ran while
    it trained; and the space the last head version worked in."""
    from labeling.models import Project

    assert isinstance(project, Project)
    heads = list(project.model_versions.filter(kind="head").order_by("number"))
    tunes = []
    for run in project.finetune_runs.order_by("created_at"):
        version = run.version
        during = [
            v.number
            for v in heads
            if run.started_at
            and run.finished_at
            and run.started_at <= v.created_at <= run.finished_at
        ]
        tunes.append(
            {
                "status": run.status,
                "last_error": run.last_error,
                "requested_by": run.requested_by.username if run.requested_by else None,
                "labels": len(run.item_ids),
                "seconds": (run.finished_at - run.started_at).total_seconds()
                if run.started_at and run.finished_at
                else None,
                "version": version.number if version else None,
                "evaluation_accuracy": version.metrics.get("evaluation", {}).get("accuracy")
                if version
                else None,
                "promoted": version.promoted if version else None,
                "head_versions_while_it_trained": during,
            }
        )
    last = heads[-1] if heads else None
    return {
        "fine_tunes": tunes,
        "head_versions": len(heads),
        "last_head_space": last.encoder if last else None,
        "last_head_evaluation_accuracy": last.metrics.get("evaluation", {}).get("accuracy")
        if last
        else None,
    }


def _true_labels_saved(
    project: object, dataset: Dataset, truth: dict[str, str], labels_used: int, repeats: int
) -> dict[str, object]:
    """Random sampling's real learning curve on this pool, inverted at the live model's accuracy."""
    from labeling.models import Project
    from modeling.core.classifiers import HeadClassifier
    from modeling.core.encoders import TextEncoder, default_encoder_path
    from modeling.core.labels_saved import labels_to_reach
    from modeling.core.simulation_report import mean_curve
    from modeling.datasets import embed_cached, load_labeled
    from modeling.services.embeddings import encoder_name, load_embeddings
    from modeling.services.training_data import training_set

    assert isinstance(project, Project)
    labels = list(project.labels.all())
    index_of = {label.name: i for i, label in enumerate(labels)}
    ids, vectors = load_embeddings(project, encoder_name(project))
    texts = dict(project.items.values_list("pk", "text"))
    pool_y = np.array([index_of[truth[texts[int(pk)]]] for pk in ids])
    with dataset.test.open("rb") as stream:
        test = load_labeled(stream, "csv", dataset.test_columns)
    test_y = np.array([index_of[dataset.test_class(label)] for label in test.labels])
    # The repository's cache, shared with `manage.py simulate`: this run's var dir is temporary.
    cache = REPO_ROOT / "var" / "cache" / "embeddings"
    test_vectors, _ = embed_cached(TextEncoder(default_encoder_path()), test.texts, cache)

    training = training_set(project, labels)
    row_of = {int(pk): row for row, pk in enumerate(ids)}
    rows = np.array([row_of[pk] for pk in training.item_ids])
    live_model = HeadClassifier(len(labels)).fit(vectors[rows], training.targets)
    live_test_accuracy = float(np.mean(live_model.predict_proba(test_vectors).argmax(1) == test_y))

    curves = _random_curves(
        vectors, pool_y, test_vectors, test_y, len(labels), live_test_accuracy, repeats
    )
    sizes, mean = mean_curve(curves)
    needed = labels_to_reach(sizes, mean, live_test_accuracy)
    # Each run's own figure: how much the truth itself moves with random's draw.
    per_run = [labels_to_reach(*mean_curve([curve]), live_test_accuracy) for curve in curves]
    return {
        "live_model_test_accuracy": live_test_accuracy,
        "random_accuracy_at_labels_used": float(np.interp(labels_used, sizes, mean)),
        "random_curve_up_to": sizes[-1],
        "random_labels_for_live_accuracy": None if needed is None else round(needed),
        "true_labels_saved": None if needed is None else round(needed) - labels_used,
        "true_labels_saved_per_run": [
            None if run is None else round(run) - labels_used for run in per_run
        ],
        "true_figure_method": (
            f"random sampling on the same {len(pool_y)}-item pool, {repeats} runs of "
            f"{sizes[1] - sizes[0]} labels a round up to {sizes[-1]}, accuracy on "
            f"{dataset.title} {dataset.test.name} ({len(test_y)} items), mean curve inverted by "
            f"linear interpolation"
        ),
    }


def _random_curves(
    vectors: npt.NDArray[np.floating],
    pool_y: npt.NDArray[np.integer],
    test_vectors: npt.NDArray[np.floating],
    test_y: npt.NDArray[np.integer],
    n_classes: int,
    target: float,
    repeats: int,
) -> list[list[CurvePoint]]:
    """Random sampling's curves, run on until their mean reaches ``target`` or the pool ends.

    Each further try doubles the budget and the round size and runs afresh, so every try
    trains about 100 classifiers a run, not more and more.
    """
    from modeling.core.labels_saved import labels_to_reach
    from modeling.core.simulation import run_simulation
    from modeling.core.simulation_report import mean_curve

    budget, batch_size = 2500, 25
    while True:
        curves = [
            run_simulation(
                vectors,
                pool_y,
                test_vectors,
                test_y,
                n_classes,
                "random",
                seed_size=batch_size,
                batch_size=batch_size,
                budget=budget,
                seed=seed,
            )
            for seed in range(repeats)
        ]
        if labels_to_reach(*mean_curve(curves), target) is not None or budget >= len(pool_y):
            return curves
        _log(f"random sampling stays below {target:.1%} up to {budget} labels; going on")
        budget, batch_size = min(2 * budget, len(pool_y)), 2 * batch_size


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}")


if __name__ == "__main__":
    raise SystemExit(main())
