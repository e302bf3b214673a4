"""Compare TextEncoder with sentence-transformers on the same model: throughput and embeddings.

Usage:
    python bench/bench_embedding_vs_st.py [N] [--data PATH] [--batch-size 64] [--repeats 2]

Both encode the first N texts of a headerless ``text,label`` CSV (AG News sample by default)
with the bundled all-MiniLM-L6-v2 on the CPU, in the same process, alternating which goes
first; the best of ``--repeats`` runs of each is kept. The table also gives the largest
absolute difference between the two sets of embeddings, which should be float noise.

sentence-transformers is not a dependency of Sift itself; install the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_embedding import DEFAULT_DATA, read_texts
from modeling.core.encoders import TextEncoder, default_encoder_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=2000, help="texts to encode")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="headerless text,label CSV")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="runs per encoder; best is kept")
    args = parser.parse_args()
    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")

    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    texts = read_texts(args.data, args.n)
    ours = TextEncoder(device="cpu")
    theirs = SentenceTransformer(str(default_encoder_path()), device="cpu")
    encoders: dict[str, Callable[[list[str]], npt.NDArray[np.float32]]] = {
        "TextEncoder.encode": lambda batch: ours.encode(batch, batch_size=args.batch_size),
        "SentenceTransformer.encode": lambda batch: np.asarray(
            theirs.encode(batch, batch_size=args.batch_size, show_progress_bar=False)
        ),
    }
    for encode in encoders.values():
        encode(texts[: args.batch_size])  # warm-up

    seconds: dict[str, float] = {}
    embeddings: dict[str, npt.NDArray[np.float32]] = {}
    names = list(encoders)
    for repeat in range(args.repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            embeddings[name] = encoders[name](texts)
            elapsed = time.perf_counter() - started
            seconds[name] = min(elapsed, seconds.get(name, elapsed))

    ours_vectors, theirs_vectors = (embeddings[name] for name in names)
    difference = float(np.abs(ours_vectors - theirs_vectors).max())
    cosine = float(np.min(np.sum(ours_vectors * theirs_vectors, axis=1)))
    print(
        f"\n{len(texts)} texts, batch size {args.batch_size}, cpu, {torch.get_num_threads()} torch "
        f"threads, torch {torch.__version__}, sentence-transformers "
        f"{sentence_transformers.__version__}, best of {args.repeats}\n"
    )
    print("| encoder | seconds | items/s | relative |")
    print("|---|---:|---:|---:|")
    for name in names:
        relative = seconds[names[1]] / seconds[name]
        print(
            f"| {name} | {seconds[name]:.2f} | {len(texts) / seconds[name]:.1f} | {relative:.2f}x |"
        )
    print(
        f"\nembeddings: max |difference| {difference:.1e}, lowest row cosine {cosine:.6f}, "
        f"shapes {ours_vectors.shape} / {theirs_vectors.shape}"
    )


if __name__ == "__main__":
    main()
