"""Measure TextEncoder throughput with and without length-sorted batching.

Usage:
    python bench/bench_embedding.py [N] [--data PATH] [--batch-size 64] [--device cpu]
                                    [--repeats 1]

Reads the first N texts of a headerless ``text,label`` CSV (AG News sample by default),
encodes them unsorted and sorted by token length in the same process (alternating, best of
``--repeats`` runs each, which damps noise from other work on the machine), and prints items
per second for both and their ratio.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeling.core.encoders import TextEncoder

DEFAULT_DATA = Path("/work/shared/datasets/ag_news/train_sample_5k/train_sample.csv")


def read_texts(path: Path, n: int) -> list[str]:
    """First ``n`` values of the first column of a headerless CSV."""
    with path.open(newline="", encoding="utf-8") as handle:
        texts = [row[0] for row, _ in zip(csv.reader(handle), range(n), strict=False) if row]
    if len(texts) < n:
        print(f"note: {path} holds only {len(texts)} texts", file=sys.stderr)
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=2000, help="texts to encode")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="headerless text,label CSV")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode; best is kept")
    args = parser.parse_args()

    texts = read_texts(args.data, args.n)
    encoder = TextEncoder(device=args.device)
    encoder.encode(texts[: args.batch_size], batch_size=args.batch_size)  # warm-up

    modes = {"unsorted": False, "length-sorted": True}
    seconds: dict[str, float] = {}
    embeddings: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for label, sort_by_length in modes.items():
            started = time.perf_counter()
            embeddings[label] = encoder.encode(
                texts, batch_size=args.batch_size, sort_by_length=sort_by_length
            )
            elapsed = time.perf_counter() - started
            seconds[label] = min(elapsed, seconds.get(label, elapsed))

    lengths = [
        len(ids) for ids in encoder.tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    ]
    print(
        f"encoder={encoder.name} device={encoder.device} texts={len(texts)} "
        f"batch_size={args.batch_size} tokens/text: mean={np.mean(lengths):.0f} max={max(lengths)}"
    )
    print(f"{'batching':<15}{'seconds':>10}{'items/s':>10}")
    for label in modes:
        print(f"{label:<15}{seconds[label]:>10.2f}{len(texts) / seconds[label]:>10.1f}")
    speedup = seconds["unsorted"] / seconds["length-sorted"]
    max_difference = np.abs(embeddings["unsorted"] - embeddings["length-sorted"]).max()
    print(f"speed-up from length sorting: {speedup:.2f}x (max |difference| {max_difference:.1e})")


if __name__ == "__main__":
    main()
