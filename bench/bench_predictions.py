"""What predicting every item costs a retrain: refresh_model with and without storing the
predictions, alternated in one process on the retrain bench's 100,000-item project.

Each retrain predicts every embedded item (labeled ones from cross-validation) and stores the
top classes as a PredictionSet (modeling/services/predictions.py). This bench seeds the same
project as bench/bench_retrain.py (synthetic 384-d embeddings, ~500 answers, PostgreSQL),
warms the process's embedding cache, then runs `--pairs` pairs of refreshes, one with
`store_predictions` and one with it replaced by a no-op, in alternating order, and reports
the medians, their difference, and the time inside `store_predictions` itself, against the
2-second retrain budget.

    .venv/bin/python bench/bench_predictions.py
    .venv/bin/python bench/bench_predictions.py --items 20000 --pairs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import bench_retrain  # bench/ is on sys.path when run as a script
from harness import add_postgres_url, announce, migrated_database

BUDGET_SECONDS = 2.0


def main() -> int:
    args = _parse_args()
    command = announce()
    with migrated_database("postgres", args.postgres_url, bench_retrain.BENCH_DATABASE):
        project_id, _, labeled = bench_retrain._seed(args)
        print(f"seeded {args.items} items, {labeled} answers", file=sys.stderr)
        with_sets, without, storing = _measure(project_id, args.pairs)
    print()
    print(f"`{command}`: {args.items:,} items, {labeled} labeled, PostgreSQL")
    print()
    print("| refresh_model | runs | median s | min s | max s |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in (
        ("storing every item's prediction", with_sets),
        ("without (store_predictions a no-op)", without),
        ("inside store_predictions", storing),
    ):
        print(
            f"| {name} | {len(runs)} | {statistics.median(runs):.3f} | {min(runs):.3f} "
            f"| {max(runs):.3f} |"
        )
    extra = statistics.median(with_sets) - statistics.median(without)
    print()
    print(
        f"Predicting and storing every item adds {extra:.3f} s to the median retrain "
        f"({statistics.median(storing):.3f} s inside store_predictions), "
        f"{100 * statistics.median(storing) / BUDGET_SECONDS:.0f}% of the "
        f"{BUDGET_SECONDS:.0f}-second budget."
    )
    return 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="items in the project")
    parser.add_argument("--labeled", type=int, default=500, help="items answered first")
    parser.add_argument("--pairs", type=int, default=7, help="pairs of refreshes")
    parser.add_argument("--retrain-every", type=int, default=10, help="the project's setting")
    parser.set_defaults(annotators=4)  # the retrain bench's seed makes these accounts
    add_postgres_url(parser)
    return parser.parse_args()


def _measure(project_id: int, pairs: int) -> tuple[list[float], list[float], list[float]]:
    from modeling.services import refresh

    real = refresh.store_predictions
    storing: list[float] = []

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            storing.append(time.perf_counter() - started)

    def skipped(*args: Any, **kwargs: Any) -> None:
        return None

    bench_retrain._refresh_once(project_id)  # warms the embedding cache
    with_sets: list[float] = []
    without: list[float] = []
    runs: list[tuple[Callable[..., Any], list[float]]] = [(timed, with_sets), (skipped, without)]
    for pair in range(pairs):
        for store, times in runs if pair % 2 == 0 else runs[::-1]:
            refresh.store_predictions = store
            times.append(bench_retrain._refresh_once(project_id))
    refresh.store_predictions = real
    return with_sets, without, storing


if __name__ == "__main__":
    sys.exit(main())
