"""What choosing the head's regularization costs a retrain: a fit with a given C against a fit
that chooses it by cross-validation (``HeadClassifier(C=None)``), in one process.

Unit-length 384-d vectors around one center per class stand in for MiniLM embeddings; each
size is fitted ``--repeats`` times both ways, interleaved, and the medians are compared.

    .venv/bin/python bench/bench_head_choice.py
    .venv/bin/python bench/bench_head_choice.py --sizes 500x4 3000x77 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import announce
from modeling.core.classifiers import HEAD_C, HeadClassifier

DIMENSION = 384


def clusters(n: int, n_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centers = rng.normal(size=(n_classes, DIMENSION))
    y = rng.integers(0, n_classes, n)
    X = centers[y] + 1.5 * rng.normal(size=(n, DIMENSION))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y


def seconds(C: float | None, n_classes: int, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    started = time.perf_counter()
    head = HeadClassifier(n_classes, C=C).fit(X, y)
    return time.perf_counter() - started, head.fitted_C


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["500x4", "500x77", "3000x77", "10000x77"])
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    print(announce())
    print(f"{'labels x classes':>17} {'given C':>9} {'chosen':>9} {'ratio':>6}  C chosen")
    rng = np.random.default_rng(0)
    for size in options.sizes:
        n, n_classes = (int(part) for part in size.split("x"))
        X, y = clusters(n, n_classes, rng)
        given, chosen, picks = [], [], set()
        for _ in range(options.repeats):
            given.append(seconds(HEAD_C, n_classes, X, y)[0])
            took, C = seconds(None, n_classes, X, y)
            chosen.append(took)
            picks.add(C)
        fixed, auto = statistics.median(given), statistics.median(chosen)
        print(
            f"{size:>17} {fixed * 1000:>7.0f}ms {auto * 1000:>7.0f}ms {auto / fixed:>5.1f}x"
            f"  {', '.join(f'{C:g}' for C in sorted(picks))}"
        )


if __name__ == "__main__":
    main()
