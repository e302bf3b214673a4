"""Measure the int8 encoder against fp32 on the CPU: items/s, agreement, thread settings.

Usage:
    python bench/bench_quantize.py [N] [--data PATH] [--repeats 2] [--thread-texts 1000]
                                   [--threads 2] [--json PATH] [--cache-dir var/cache/embeddings]

Reads the first N texts (5,000 by default) of a headerless ``text,label`` CSV (the AG News
sample by default) and, in one process:

1. encodes them with the fp32 and the int8 encoder (``TextEncoder(precision=...)``, the same
   code the workers run), alternating, ``--repeats`` runs each, the best kept: items/s of
   both and their ratio, and the cosine of each int8 embedding to its fp32 one (mean, 1st
   percentile, min);
2. thread settings on ``--thread-texts`` of them: torch (and ONNX Runtime) on 1 thread against
   ``--threads`` threads in this process, then ``--threads`` processes of 1 thread each
   (each encoding its share, started together) against one process of ``--threads``
   threads, in aggregate items/s.

The texts are read as ``simulate`` and the importer read them; with ``--cache-dir`` both
sets of embeddings are stored where ``simulate`` looks first, so a simulation on the same file
(AG News: ``--no-header --text-column 1 --label-column 2``) skips embedding.
Ratios within one run are what count; on a shared machine absolute figures move.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_embedding import DEFAULT_DATA
from bench.harness import announce
from labeling.parsers import Columns
from modeling.core.encoders import PRECISIONS, Precision, TextEncoder
from modeling.datasets import embedding_cache_key, load_labeled


def read_texts(path: Path, n: int) -> list[str]:
    """The first ``n`` texts of a headerless ``text,label`` CSV, parsed as ``simulate`` does."""
    with path.open("rb") as stream:
        data = load_labeled(stream, "csv", Columns(text=["1"], label="2", has_header=False))
    return list(data.texts[:n])


def encoder(precision: Precision, threads: int) -> TextEncoder:
    """An encoder on the CPU whose forward passes use ``threads`` threads."""
    torch.set_num_threads(threads)  # ONNX Runtime's session takes its count from here
    return TextEncoder(device="cpu", precision=precision)


def timed(model: TextEncoder, texts: list[str], threads: int) -> tuple[float, np.ndarray]:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    embeddings = model.encode(texts)
    return time.perf_counter() - started, embeddings


def _worker(
    precision: Precision, texts: list[str], barrier: Any, results: Any
) -> None:  # pragma: no cover - runs in a child process
    model = encoder(precision, 1)
    model.encode(texts[:8])  # warm-up
    barrier.wait()
    seconds, _ = timed(model, texts, 1)
    results.put(seconds)


def processes_items_per_second(precision: Precision, texts: list[str], processes: int) -> float:
    """Aggregate items/s of ``processes`` one-thread processes, each encoding its share."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    shares = [texts[index::processes] for index in range(processes)]
    children = [
        context.Process(target=_worker, args=(precision, share, barrier, results))
        for share in shares
    ]
    for child in children:
        child.start()
    seconds = [results.get() for _ in children]
    for child in children:
        child.join()
    return len(texts) / max(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=5000, help="texts to encode")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="headerless text,label CSV")
    parser.add_argument("--repeats", type=int, default=2, help="runs per precision; best kept")
    parser.add_argument("--threads", type=int, default=2, help="threads (and processes) to try")
    parser.add_argument(
        "--thread-texts", type=int, default=1000, help="texts for the thread settings (0: skip)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--cache-dir", type=Path, help="store the embeddings for simulate here")
    args = parser.parse_args()
    announce()

    texts = read_texts(args.data, args.n)
    started = time.perf_counter()
    models = {"fp32": encoder("fp32", args.threads)}
    loaded = time.perf_counter()
    models["int8"] = encoder("int8", args.threads)
    print(
        f"loading: fp32 {loaded - started:.1f} s, int8 (export + quantize) "
        f"{time.perf_counter() - loaded:.1f} s"
    )
    for model in models.values():
        model.encode(texts[:64])  # warm-up

    seconds: dict[str, float] = {}
    embeddings: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for precision, model in models.items():
            elapsed, embeddings[precision] = timed(model, texts, args.threads)
            seconds[precision] = min(elapsed, seconds.get(precision, elapsed))
            print(f"  {precision}: {len(texts) / elapsed:.1f} items/s")
    if args.cache_dir:
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        for precision, model in models.items():
            key = embedding_cache_key(model, texts)
            np.save(args.cache_dir / f"{key}.npy", embeddings[precision])
    cosine = (embeddings["fp32"] * embeddings["int8"]).sum(axis=1)
    rate = {precision: len(texts) / seconds[precision] for precision in models}
    figures: dict[str, Any] = {
        "texts": len(texts),
        "threads": args.threads,
        "items_per_second": rate,
        "ratio": rate["int8"] / rate["fp32"],
        "cosine": {
            "mean": float(cosine.mean()),
            "p1": float(np.percentile(cosine, 1)),
            "min": float(cosine.min()),
        },
    }
    print(f"{len(texts)} texts, {args.threads} threads, best of {args.repeats}:")
    print(f"{'precision':<10}{'seconds':>10}{'items/s':>10}")
    for precision in models:
        print(f"{precision:<10}{seconds[precision]:>10.1f}{rate[precision]:>10.1f}")
    print(
        f"int8 / fp32: {figures['ratio']:.2f}x; cosine to fp32: mean {cosine.mean():.4f}, "
        f"1st percentile {figures['cosine']['p1']:.4f}, min {cosine.min():.4f}"
    )

    if args.thread_texts:
        subset = texts[: args.thread_texts]
        one = {precision: encoder(precision, 1) for precision in PRECISIONS}
        for model in one.values():
            model.encode(subset[:8])
        threads_rate: dict[str, dict[str, float]] = {}
        for precision in PRECISIONS:
            single = len(subset) / timed(one[precision], subset, 1)[0]
            many = len(subset) / timed(models[precision], subset, args.threads)[0]
            spread = processes_items_per_second(precision, subset, args.threads)
            threads_rate[precision] = {
                "1 process x 1 thread": single,
                f"1 process x {args.threads} threads": many,
                f"{args.threads} processes x 1 thread": spread,
            }
        figures["thread_settings"] = {"texts": len(subset), "items_per_second": threads_rate}
        print(f"thread settings, {len(subset)} texts, items/s (aggregate):")
        for precision, row in threads_rate.items():
            print(f"  {precision}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
