"""Measure fine-tuning throughput: fp32 against mixed precision, with and without length buckets.

Usage:
    python bench/bench_finetune.py [N] [--data PATH] [--device auto] [--precision auto]
                                   [--batch-size 16] [--max-length 128] [--repeats 1]
                                   [--threads T]

Fine-tunes MiniLM (AutoModelForSequenceClassification) for one epoch on the first N texts of
a headerless ``text,label`` CSV (AG News sample by default) in four modes, in the same
process, on the same data and from the same initial weights: fp32 or mixed precision, with
length-bucketed or plain shuffled batches. Modes alternate and the best of ``--repeats`` runs
of each is kept, which damps noise from other work on the machine. Prints training samples/s,
the share of padded positions, the last training loss, and on a GPU the peak memory.

Mixed precision is ``--precision``: ``auto`` is bf16 on a GPU that supports it, else fp16 with
loss scaling; on a CPU ``auto`` means bf16 autocast (Sift itself keeps it off on CPUs).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeling.core.encoders import default_encoder_path
from modeling.core.finetuning import (
    Examples,
    FineTuneConfig,
    TokenCache,
    evaluate_loss,
    load_classifier_model,
    resolve_device,
    resolve_precision,
    train,
)

DEFAULT_DATA = Path("/work/shared/datasets/ag_news/train_sample_5k/train_sample.csv")


def read_labeled(path: Path, n: int) -> tuple[list[str], np.ndarray]:
    """First ``n`` rows of a headerless ``text,label`` CSV, labels as class indices."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row, _ in zip(csv.reader(handle), range(n), strict=False) if row]
    names = sorted({row[1] for row in rows})
    return [row[0] for row in rows], np.array([names.index(row[1]) for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=512, help="texts to train on")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="headerless text,label CSV")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode; best is kept")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    mixed = args.precision
    if mixed == "auto":
        mixed = "bf16" if device.type == "cpu" else resolve_precision("auto", device)
    texts, y = read_labeled(args.data, args.n)
    n_classes = int(y.max()) + 1
    base = FineTuneConfig(
        epochs=1,
        batch_size=args.batch_size,
        max_length=args.max_length,
        device=str(device),
        smoke_step=False,
        warmup_ratio=0.0,
    )
    modes = {
        "fp32, plain batches": replace(base, mixed_precision="off", bucket_by_length=False),
        "fp32, length buckets": replace(base, mixed_precision="off", bucket_by_length=True),
        f"{mixed}, plain batches": replace(base, mixed_precision=mixed, bucket_by_length=False),
        f"{mixed}, length buckets": replace(base, mixed_precision=mixed, bucket_by_length=True),
    }
    _, tokenizer, _ = load_classifier_model(
        default_encoder_path(), n_classes, multi_label=False, device=torch.device("cpu")
    )
    token_ids = TokenCache(tokenizer, args.max_length).encode(texts)
    examples = Examples(token_ids, y)
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeats):
        for label, config in modes.items():
            model, _, new = load_classifier_model(
                default_encoder_path(), n_classes, multi_label=False, device=device
            )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            result = train(model, examples, None, config, new_parameters=new)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
            row = {
                "samples_per_second": len(examples) / seconds,
                "padding": result.padding_fraction,
                "loss": evaluate_loss(model, examples, config, multi_label=False),
                "peak_gib": result.peak_memory_bytes / 2**30,
            }
            if row["samples_per_second"] > best.get(label, {}).get("samples_per_second", 0):
                best[label] = row
            del model

    lengths = [len(ids) for ids in token_ids]
    print(
        f"device={device} torch_threads={torch.get_num_threads()} texts={len(texts)} "
        f"batch_size={args.batch_size} max_length={args.max_length} "
        f"tokens/text: mean={np.mean(lengths):.0f} max={max(lengths)} repeats={args.repeats}"
    )
    header = f"{'mode':<24}{'samples/s':>10}{'padding':>9}{'loss after':>11}"
    print(header + (f"{'peak GiB':>10}" if device.type == "cuda" else ""))
    for label, row in best.items():
        line = f"{label:<24}{row['samples_per_second']:>10.1f}{row['padding']:>9.1%}"
        line += f"{row['loss']:>11.3f}"
        print(line + (f"{row['peak_gib']:>10.2f}" if device.type == "cuda" else ""))
    plain = best["fp32, plain batches"]["samples_per_second"]
    for label, row in best.items():
        print(f"{label}: {row['samples_per_second'] / plain:.2f}x fp32 with plain batches")


if __name__ == "__main__":
    main()
