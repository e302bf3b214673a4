"""Does the labels-saved band cover the truth? An offline check on a real dataset, no Django.

The dashboard's estimate (modeling/core/labels_saved.py) sees only the random-control items. Here
the "current model" is trained on ``m`` random pool items that are not controls, so random
sampling needs, by construction, ``m`` labels for its accuracy: the true labels saved is 0 and
the estimate's "labels random sampling needs" (estimate + m) should be near ``m``, its band
around it. Each seed draws new controls and a new model; the table gives, per ``m``, the
median of the estimated labels needed and, out of the seeds, how often the band (or lower
bound) held ``m``, how often it missed, and how often there was no number at all.

    .venv/bin/python bench/labels_saved_check.py --dataset banking77 --controls 500 \
        --labels 250 500 1000 --seeds 10

Needs ../shared/datasets; embeddings are cached in var/cache/embeddings (as for simulate).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import REPO_ROOT
from bench.scripted_annotator import DATASETS


def main() -> int:
    from modeling.core import labels_saved

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="ag_news")
    parser.add_argument("--controls", type=int, default=400, help="random-control labels")
    parser.add_argument("--labels", type=int, nargs="+", default=[200, 400, 800])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--family",
        choices=sorted(labels_saved.SCALES),
        help="fit only this family of curve shapes (default: all, as the dashboard does)",
    )
    args = parser.parse_args()
    if args.family:
        labels_saved.SHAPES = tuple(s for s in labels_saved.SHAPES if s.family == args.family)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")

    from modeling.core.classifiers import HeadClassifier
    from modeling.core.encoders import TextEncoder, default_encoder_path
    from modeling.datasets import embed_cached, index_labels, load_labeled

    dataset = DATASETS[args.dataset]()
    with dataset.train.open("rb") as stream:
        train = load_labeled(stream, "csv", dataset.train_columns)
    names, [y] = index_labels([dataset.train_class(label) for label in train.labels])
    cache = REPO_ROOT / "var" / "cache" / "embeddings"
    X, _ = embed_cached(TextEncoder(default_encoder_path()), train.texts, cache)
    n_classes = len(names)
    print(f"{dataset.title}: {len(y)} items, {n_classes} classes, {args.controls} controls")

    rows: dict[int, list[tuple[float | None, float | None, float | None, str]]] = {}
    started = time.perf_counter()
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(y))
        control, rest = order[: args.controls], order[args.controls :]
        for m in args.labels:
            train_rows = rest[:m]
            model = HeadClassifier(n_classes).fit(X[train_rows], y[train_rows])
            correct = model.predict_proba(X[control]).argmax(axis=1) == y[control]
            result = labels_saved.labels_saved_estimate(
                X[control],
                y[control],
                correct,
                m,
                lambda: HeadClassifier(n_classes),
                np.random.default_rng(seed),
            )
            needed = None if result.estimate is None else result.estimate + m
            low = None if result.low is None else result.low + m
            high = None if result.high is None else result.high + m
            rows.setdefault(m, []).append((needed, low, high, result.reason))
            band = f"[{low}, {'...' if high is None else high}]"
            print(
                f"seed {seed} m {m}: accuracy {correct.mean():.3f}, needed {needed} {band}"
                f"{' at least' if result.at_least else ''} {result.reason[:60]}"
            )
    print(f"\n{time.perf_counter() - started:.0f} s")
    print("| labels m | median needed | band holds m | band misses m | no number |")
    print("|---|---|---|---|---|")
    for m, results in rows.items():
        numbers = [needed for needed, *_ in results if needed is not None]
        held = sum(
            1
            for _, low, high, _ in results
            if low is not None and low <= m and (high is None or m <= high)
        )
        missing = sum(1 for needed, *_ in results if needed is None)
        median = f"{np.median(numbers):.0f}" if numbers else "-"
        missed = len(results) - held - missing
        print(f"| {m} | {median} | {held} | {missed} | {missing} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
