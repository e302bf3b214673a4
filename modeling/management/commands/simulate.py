"""python manage.py simulate --train FILE --out DIR: replay active learning on labeled data.

A simulated annotator labels what each strategy asks for; the learning curves, their summary
and a plot land in DIR, so strategies can be compared before anyone labels for real.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from labeling.parsers import Columns, ParseError, guess_format
from modeling.core.cadence import FINETUNE_GROWTH, FINETUNE_MIN_LABELS
from modeling.core.classifiers import HeadClassifier
from modeling.core.encoders import PRECISIONS, TextEncoder
from modeling.core.finetuning import AdaptingFineTunes, FineTuneConfig
from modeling.core.simulation import (
    Adaptation,
    CurvePoint,
    StrategySummary,
    run_simulation,
    summarize,
)
from modeling.core.simulation_report import write_report
from modeling.core.strategies import DEFAULT_STRATEGY, STRATEGIES
from modeling.datasets import (
    FORMATS,
    LabeledTexts,
    embed_cached,
    index_labels,
    load_labeled,
    stratified_split,
)


def _no_adaptation(options: dict[str, Any], data: _Texts) -> Adaptation | None:
    return None


def _fine_tunes(options: dict[str, Any], data: _Texts) -> Adaptation:
    config = FineTuneConfig(
        epochs=options["epochs"],
        warm_start_epochs=options["warm_epochs"],
        min_steps=options["min_steps"],
        learning_rate=options["learning_rate"],
        head_learning_rate=options["head_learning_rate"],
        validation_fraction=options["validation_fraction"],
        head_C=options["start_head_c"],
        device=options["device"],
    )
    return AdaptingFineTunes(
        data.train,
        data.test,
        data.test_y,
        config,
        model_path=options["encoder"],
        growth=options["finetune_growth"],
        at_least=options["finetune_min_labels"],
    )


@dataclass(frozen=True)
class _Texts:
    train: np.ndarray
    test: np.ndarray
    test_y: np.ndarray


MODELS: dict[str, Callable[[dict[str, Any], _Texts], Adaptation | None]] = {
    "head": _no_adaptation,
    "finetune": _fine_tunes,
}
"""What a simulation replays, by the name given to ``--model``. head: the logistic head on the
encoder as it came. finetune: the live loop, where the project fine-tunes the transformer by
itself as labels grow (LP-FT, warm starts) and the head retrains in the space each fine-tune
adapted, every round. Each run gets a fresh one."""

HELD_OUT_FRACTION = 0.2
"""Share of every class of --train held out as the test set when no --test is given."""

CURVE_COLUMNS = ("strategy", "repeat", "labels", "accuracy", "macro_f1", "seconds")

Curves = dict[str, list[list[CurvePoint]]]


class Command(BaseCommand):
    help = (
        "Simulate active learning on a fully labeled dataset and write learning curves "
        "(curves.csv, curves.png) and their summary (summary.json) to --out."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--train", type=Path, required=True, help="labeled pool to draw from")
        parser.add_argument(
            "--test",
            type=Path,
            help=(
                "labeled test set (default: a stratified "
                f"{HELD_OUT_FRACTION * 100:.0f}%% of --train)"
            ),
        )
        parser.add_argument(
            "--format",
            choices=FORMATS,
            help="default: from the extension; labeled-lines is 'LABEL TEXT' per line",
        )
        parser.add_argument(
            "--text-column",
            help="column name (or 1-based position); several joined by commas are concatenated",
        )
        parser.add_argument("--label-column", help="column holding the label (default: 'label')")
        parser.add_argument("--no-header", action="store_true", help="the first row is data")
        parser.add_argument(
            "--strategy",
            nargs="+",
            metavar="NAME",
            help=f"one or more of: {', '.join(STRATEGIES)} (default: {DEFAULT_STRATEGY} random)",
        )
        parser.add_argument(
            "--seed-size", type=int, default=25, help="labels before the first model"
        )
        parser.add_argument("--batch-size", type=int, default=25, help="labels added per round")
        parser.add_argument("--budget", type=int, default=525, help="total labels per run")
        parser.add_argument(
            "--repeats", type=int, default=3, help="runs per strategy, seeds S..S+N-1"
        )
        parser.add_argument(
            "--first-seed",
            type=int,
            default=0,
            metavar="S",
            help="seed of the first repeat (default 0): fresh seeds confirm a choice",
        )
        parser.add_argument("--model", default="head", help=f"one of: {', '.join(MODELS)}")
        parser.add_argument("--encoder", type=Path, help="local model folder (default: MiniLM)")
        parser.add_argument(
            "--precision",
            choices=PRECISIONS,
            default="fp32",
            help="the encoder's precision for embedding (default fp32; int8 is what a CPU "
            "worker embeds with by default, SIFT_ENCODER_PRECISION); fine-tunes stay fp32",
        )
        parser.add_argument(
            "--epochs", type=int, default=3, help="finetune: epochs of the first round"
        )
        parser.add_argument(
            "--warm-epochs",
            type=int,
            default=1,
            help="finetune: epochs of later rounds, which start from the previous round's model",
        )
        parser.add_argument(
            "--min-steps",
            type=int,
            default=FineTuneConfig.min_steps,
            help="finetune: optimizer steps each fine-tune takes at least",
        )
        parser.add_argument(
            "--learning-rate",
            type=float,
            default=FineTuneConfig.learning_rate,
            help="finetune: peak learning rate of the encoder's weights",
        )
        parser.add_argument(
            "--validation-fraction",
            type=float,
            default=FineTuneConfig.validation_fraction,
            help="finetune: share of the labels held out for early stopping (0: none)",
        )
        parser.add_argument(
            "--head-c",
            type=_inverse_regularization,
            default=None,
            help="inverse regularization of the logistic head that ranks the pool, or auto "
            "(the default: chosen by cross-validation at every fit, as the live head does)",
        )
        parser.add_argument(
            "--start-head-c",
            type=_inverse_regularization,
            default=FineTuneConfig.head_C,
            help="finetune: the same for the head the linear layer starts from (default: 3)",
        )
        parser.add_argument(
            "--head-learning-rate",
            type=float,
            default=FineTuneConfig.head_learning_rate,
            help="finetune: peak learning rate of the linear layer",
        )
        parser.add_argument(
            "--finetune-growth",
            type=float,
            default=FINETUNE_GROWTH,
            help="finetune: fine-tune once the labels grew by this share since the last one",
        )
        parser.add_argument(
            "--finetune-min-labels",
            type=int,
            default=FINETUNE_MIN_LABELS,
            help="finetune: ...and by at least this many labels",
        )
        parser.add_argument("--device", default="auto", help="finetune: auto, cpu, cuda, cuda:N")
        parser.add_argument(
            "--threads", type=int, help="CPU threads for torch (default: every core)"
        )
        parser.add_argument(
            "--report",
            action="store_true",
            help="also write the dashboard's figures: true labels saved against random "
            "(labels_saved.csv/.png), compute per strategy (compute.csv), report.json",
        )
        parser.add_argument("--out", type=Path, required=True, help="folder for the results")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        strategies = _strategies(options["strategy"])
        if options["model"] not in MODELS:
            raise CommandError(
                f"Unknown model {options['model']!r}; choose one of: {', '.join(MODELS)}."
            )
        for name in (
            "seed_size",
            "batch_size",
            "budget",
            "repeats",
            "epochs",
            "warm_epochs",
            "finetune_min_labels",
        ):
            if options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1.")
        if options["first_seed"] < 0:
            raise CommandError("--first-seed must be 0 or more.")
        if options["seed_size"] > options["budget"]:
            raise CommandError("--seed-size cannot exceed --budget.")
        text_column = options["text_column"]
        columns = Columns(
            text=[c.strip() for c in text_column.split(",")] if text_column else [],
            label=options["label_column"],
            has_header=not options["no_header"],
        )
        train_path: Path = options["train"]
        test_path: Path | None = options["test"]
        train = self._load(train_path, options["format"], columns)
        test = self._load(test_path, options["format"], columns) if test_path else None
        class_names, (train_y, test_y) = index_labels(train.labels, test.labels if test else [])
        if len(np.unique(train_y)) < 2:
            raise CommandError(
                f"{train_path.name} has a single class ({class_names[0]!r}); "
                "a classifier needs at least two."
            )

        torch.set_num_threads(options["threads"] or os.cpu_count() or 1)
        encoder = TextEncoder(options["encoder"], precision=options["precision"])
        train_emb = self._embed(encoder, train, train_path.name)
        # Fine-tunes read the texts; the head and the strategies read embeddings.
        train_texts = np.array(train.texts, dtype=object)
        if test is not None and test_path is not None:
            test_emb = self._embed(encoder, test, test_path.name)
            test_texts = np.array(test.texts, dtype=object)
        else:
            train_rows, test_rows = stratified_split(
                train_y, HELD_OUT_FRACTION, np.random.default_rng(0)
            )
            test_emb, test_y = train_emb[test_rows], train_y[test_rows]
            train_emb, train_y = train_emb[train_rows], train_y[train_rows]
            test_texts, train_texts = train_texts[test_rows], train_texts[train_rows]
            self.stdout.write(
                f"Held out {len(test_rows)} of {train_path.name} (stratified) as the test set."
            )
        self.stdout.write(
            f"{len(class_names)} classes, {len(train_y)} to draw from, {len(test_y)} to test on."
        )

        texts = _Texts(train_texts, test_texts, test_y)
        curves: Curves = {name: [] for name in strategies}
        for name in strategies:
            for repeat in range(options["repeats"]):
                run_started = time.perf_counter()
                curve = run_simulation(
                    train_emb,
                    train_y,
                    test_emb,
                    test_y,
                    len(class_names),
                    name,
                    seed_size=options["seed_size"],
                    batch_size=options["batch_size"],
                    budget=options["budget"],
                    seed=options["first_seed"] + repeat,
                    classifier_factory=functools.partial(HeadClassifier, C=options["head_c"]),
                    adaptation=(adaptation := MODELS[options["model"]](options, texts)),
                )
                curves[name].append(curve)
                if isinstance(adaptation, AdaptingFineTunes):
                    for tune in adaptation.history:
                        self.stdout.write(
                            f"  fine-tuned at {tune['labels']:.0f} labels in "
                            f"{tune['seconds']:.0f} s: its own test accuracy {tune['accuracy']:.3f}"
                        )
                self.stdout.write(
                    f"{name}, repeat {repeat + 1}/{options['repeats']} "
                    f"(seed {options['first_seed'] + repeat}): "
                    f"accuracy {curve[-1].accuracy:.3f} at {curve[-1].labels} labels "
                    f"({time.perf_counter() - run_started:.1f} s)"
                )

        summary = summarize(curves)
        out: Path = options["out"]
        out.mkdir(parents=True, exist_ok=True)
        write_curves_csv(out / "curves.csv", curves, first_seed=options["first_seed"])
        (out / "summary.json").write_text(
            json.dumps({"default_strategy": DEFAULT_STRATEGY, "strategies": summary}, indent=2)
            + "\n"
        )
        plot_curves(out / "curves.png", curves, title=_dataset_name(train_path))
        self.stdout.write(summary_table(summary, has_random="random" in curves))
        written = ["curves.csv", "curves.png", "summary.json"]
        if options["report"]:
            written += write_report(out, curves, title=_dataset_name(train_path))
        self.stdout.write(
            f"Wrote {', '.join(written)} to {out} in {time.perf_counter() - started:.0f} s."
        )

    def _load(self, path: Path, fmt: str | None, columns: Columns) -> LabeledTexts:
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        try:
            with path.open("rb") as stream:
                data = load_labeled(stream, fmt or _guess_format(path), columns)
        except ParseError as exc:
            raise CommandError(f"{path.name}: {exc}") from exc
        for rejection in data.rejected[:5]:
            self.stderr.write(f"{path.name} line {rejection.line}: {rejection.reason}")
        if len(data.rejected) > 5:
            self.stderr.write(f"... and {len(data.rejected) - 5} more unreadable records")
        if not data.texts:
            raise CommandError(
                f"{path.name} has no rows with both a text and a label; "
                "check --text-column, --label-column and --no-header."
            )
        skipped = f"; dropped {data.dropped} without text or a single label" if data.dropped else ""
        self.stdout.write(f"Read {len(data.texts)} labeled rows from {path.name}{skipped}.")
        return data

    def _embed(self, encoder: TextEncoder, data: LabeledTexts, name: str) -> np.ndarray:
        cache_dir = Path(settings.VAR_DIR) / "cache" / "embeddings"
        embeddings, cached = embed_cached(
            encoder, data.texts, cache_dir, progress=_EmbeddingProgress(self.stdout.write, name)
        )
        if cached:
            self.stdout.write(f"Embeddings of {name} read from the cache.")
        return embeddings


def _inverse_regularization(value: str) -> float | None:
    """``--head-c``: a positive number, or auto (None: chosen by cross-validation)."""
    if value == "auto":
        return None
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not (number > 0 and math.isfinite(number)):
        raise argparse.ArgumentTypeError(f"expected a positive number or auto, got {value!r}")
    return number


def _strategies(names: Sequence[str] | None) -> list[str]:
    """The strategies to run, in order, without repeats; the default and random by default."""
    if not names:
        return [DEFAULT_STRATEGY, "random"]
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown:
        raise CommandError(
            f"Unknown strategy {unknown[0]!r}; choose from: {', '.join(STRATEGIES)}."
        )
    return list(dict.fromkeys(names))


def _guess_format(path: Path) -> str:
    try:
        fmt = guess_format(path.name)
    except ParseError:
        fmt = ""
    if fmt not in FORMATS:
        raise CommandError(
            f"Cannot tell the format of {path.name!r} from its extension; "
            f"pass --format (one of: {', '.join(FORMATS)})."
        )
    return fmt


def _dataset_name(path: Path) -> str:
    """The file with its folder, e.g. ``banking77/train.csv``: file names alone repeat."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


class _EmbeddingProgress:
    """Writes ``done/total`` and the rate every few seconds while a file is embedded."""

    def __init__(self, write: Callable[[str], Any], name: str, every: float = 5.0) -> None:
        self.write = write
        self.name = name
        self.every = every
        self.started = self.last = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < self.every:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        self.write(f"Embedding {self.name}: {done}/{total} ({rate:.0f} items/s)")


def write_curves_csv(
    path: Path, curves: Mapping[str, Sequence[Sequence[CurvePoint]]], first_seed: int = 0
) -> None:
    """One row per strategy, repeat and round; ``repeat`` is the run's seed."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CURVE_COLUMNS)
        for name, runs in curves.items():
            for repeat, curve in enumerate(runs):
                for point in curve:
                    writer.writerow(
                        [
                            name,
                            first_seed + repeat,
                            point.labels,
                            f"{point.accuracy:.6f}",
                            f"{point.macro_f1:.6f}",
                            f"{point.seconds:.4f}",
                        ]
                    )


def plot_curves(
    path: Path, curves: Mapping[str, Sequence[Sequence[CurvePoint]]], title: str
) -> None:
    """Mean test accuracy against labels per strategy, shaded from the worst to best repeat."""
    figure = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, runs in curves.items():
        # Every repeat has the same rounds unless the pool ran out; keep the common ones.
        rounds = min(len(curve) for curve in runs)
        labels = [point.labels for point in runs[0][:rounds]]
        accuracy = np.array([[point.accuracy for point in curve[:rounds]] for curve in runs])
        (line,) = axes.plot(labels, accuracy.mean(axis=0), marker=".", label=name)
        axes.fill_between(
            labels, accuracy.min(axis=0), accuracy.max(axis=0), color=line.get_color(), alpha=0.2
        )
    repeats = max(len(runs) for runs in curves.values())
    axes.set_title(f"{title}: mean of {repeats} repeats, band from worst to best")
    axes.set_xlabel("labeled items")
    axes.set_ylabel("test accuracy")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.savefig(path, dpi=120)


def summary_table(summary: Mapping[str, StrategySummary], *, has_random: bool) -> str:
    """Strategy, AUC, final accuracy and labels needed to reach random's final accuracy."""
    width = max(len("strategy"), *(len(name) for name in summary))
    lines = [f"{'strategy':<{width}}  {'AUC':>6}  {'final':>6}  labels to random's final"]
    for name, row in summary.items():
        needed = row["labels_to_random_final"]
        shown = str(needed) if needed is not None else ("never" if has_random else "n/a")
        lines.append(f"{name:<{width}}  {row['auc']:>6.3f}  {row['final_accuracy']:>6.3f}  {shown}")
    return "\n".join(lines)
