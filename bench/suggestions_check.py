"""Are the suggestions annotators are shown usually right? An offline check, no Django.

The label page shows the model's guess only from a confidence threshold: the lowest confidence
from which, on some measured items, guesses were right at least 80% of the time
(``modeling.core.evaluation.confidence_for_precision``, optionally at the lower end of a Wilson
interval). This replays the live loop (cold start, then the default strategy picks each batch,
a share of the served items drawn at random as controls) on the shared datasets and, after
each retrain, applies each policy's thresholds to the next batch served, whose true labels say
whether the shown guesses were right. Policies (threshold for items the model picked / for
random controls):

- ``controls``: one threshold, the version's guesses on the labeled controls (the first design);
- ``served``: one threshold, every served item's guess when it was served and its answer;
- ``by_pick``, ``by_pick_z1``, ``by_pick_z1.64``: the served items' answers, each way of
  picking on its own, at z = 0, 1 and 1.64;
- ``answers_and_evaluation`` (Sift's): the picked items' answers at z = 1.64 / the version's
  guesses on the labeled controls at z = 1.64.

Rows ``policy:picked`` and ``policy:controls`` split the served items by how they were picked.
The table gives the share of served items shown a guess, how often a shown guess was right
(pooled over rounds and seeds) and the worst seed's share.

    .venv/bin/python bench/suggestions_check.py --seeds 0 1 2

Needs ../shared/datasets; embeddings are cached in var/cache/embeddings (as for simulate).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import REPO_ROOT
from labeling.parsers import Columns

SHARED = REPO_ROOT.parent / "shared" / "datasets"
POLICIES = (
    "controls",
    "served",
    "by_pick",
    "by_pick_z1",
    "by_pick_z1.64",
    "answers_and_evaluation",
)
SOURCES = tuple(f"{policy}{kind}" for policy in POLICIES for kind in ("", ":picked", ":controls"))


@dataclass(frozen=True)
class Pool:
    path: Path
    fmt: str
    columns: Columns


POOLS = {
    "ag_news": Pool(
        SHARED / "ag_news" / "train_sample_5k" / "train_sample.csv",
        "csv",
        Columns(["1"], "2", has_header=False),
    ),
    "sst2": Pool(SHARED / "sst2_sentence" / "stsa.binary.train", "labeled-lines", Columns()),
    "sms_spam": Pool(
        SHARED / "sms_spam" / "SMSSpamCollection", "tsv", Columns(["2"], "1", has_header=False)
    ),
    "banking77": Pool(SHARED / "banking77" / "train.csv", "csv", Columns(["text"], "category")),
}


@dataclass
class Tally:
    served: int = 0
    shown: int = 0
    right: int = 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(POOLS), default=sorted(POOLS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=525)
    parser.add_argument("--batch", type=int, default=25, help="items served per model")
    parser.add_argument("--control-share", type=float, default=0.1)
    parser.add_argument("--target", type=float, default=0.8)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")

    from modeling.core.encoders import TextEncoder, default_encoder_path
    from modeling.datasets import embed_cached, index_labels, load_labeled

    encoder = TextEncoder(default_encoder_path())
    cache = REPO_ROOT / "var" / "cache" / "embeddings"
    started = time.perf_counter()
    rows = []
    for name in args.datasets:
        pool = POOLS[name]
        with pool.path.open("rb") as stream:
            data = load_labeled(stream, pool.fmt, pool.columns)
        _, [y] = index_labels(data.labels)
        X, _ = embed_cached(encoder, data.texts, cache)
        totals: dict[str, Tally] = defaultdict(Tally)
        worst: dict[str, float] = {}
        for seed in args.seeds:
            tallies = replay(X, y, seed, args)
            for source, tally in tallies.items():
                total = totals[source]
                total.served += tally.served
                total.shown += tally.shown
                total.right += tally.right
                share = tally.right / tally.shown if tally.shown else float("nan")
                if tally.shown:
                    worst[source] = min(worst.get(source, 1.0), share)
                print(
                    f"{name} seed {seed} {source}: shown {tally.shown}/{tally.served}, "
                    f"right {share:.3f}"
                )
        for source in SOURCES:
            total = totals[source]
            right = total.right / total.shown if total.shown else float("nan")
            rows.append((name, source, total.shown / total.served, right, worst.get(source)))
    print(f"\n{time.perf_counter() - started:.0f} s")
    print("| dataset | policy | served items shown a guess | shown guesses right | worst seed |")
    print("|---|---|---|---|---|")
    for name, source, shown, right, low in rows:
        figures = [f"{shown:.1%}", "-" if np.isnan(right) else f"{right:.1%}"]
        figures.append("-" if low is None else f"{low:.1%}")
        print(f"| {name} | {source} | {' | '.join(figures)} |")
    return 0


def replay(
    X: npt.NDArray[np.float32], y: npt.NDArray[np.int64], seed: int, args: argparse.Namespace
) -> dict[str, Tally]:
    """One live-like run; per policy and kind of item, how the shown guesses fared."""
    from modeling.core.classifiers import HeadClassifier
    from modeling.core.evaluation import confidence_for_precision
    from modeling.core.ranking import rank_pool
    from modeling.core.strategies import DEFAULT_STRATEGY, STRATEGIES, cold_start

    n_classes = int(y.max()) + 1
    rng = np.random.default_rng(seed)
    strategy = STRATEGIES[DEFAULT_STRATEGY]()
    chosen = list(cold_start(X, 25, rng))
    controls: list[int] = []
    tallies: dict[str, Tally] = defaultdict(Tally)
    # Each served item's confidence when it was served and whether that guess was right, by
    # how it was picked (by the model, or drawn at random as a control).
    history: dict[bool, tuple[list[float], list[bool]]] = {False: ([], []), True: ([], [])}

    def threshold(kinds: tuple[bool, ...], z: float = 0.0) -> float | None:
        confidences = [c for kind in kinds for c in history[kind][0]]
        correct = [r for kind in kinds for r in history[kind][1]]
        if not confidences:
            return None
        return confidence_for_precision(
            np.array(confidences), np.array(correct), target=args.target, min_items=10, z=z
        )

    while len(chosen) + len(controls) < args.budget:
        labeled = np.array(chosen)
        head = HeadClassifier(n_classes).fit(X[labeled], y[labeled])
        control_threshold = evaluated_threshold = None
        if controls:
            # The labeled controls, predicted by this model (as each version measures them).
            probabilities = head.predict_proba(X[np.array(controls)])
            control_threshold, evaluated_threshold = (
                confidence_for_precision(
                    probabilities.max(axis=1),
                    probabilities.argmax(axis=1) == y[np.array(controls)],
                    target=args.target,
                    min_items=10,
                    z=z,
                )
                for z in (0.0, 1.64)
            )
        # Per policy: the threshold for (model-picked, control) items.
        policies = {
            "controls": (control_threshold, control_threshold),
            "served": (threshold((False, True)),) * 2,
            "by_pick": (threshold((False,)), threshold((True,))),
            "by_pick_z1": (threshold((False,), 1.0), threshold((True,), 1.0)),
            "by_pick_z1.64": (threshold((False,), 1.64), threshold((True,), 1.64)),
            "answers_and_evaluation": (threshold((False,), 1.64), evaluated_threshold),
        }
        taken = np.zeros(len(y), dtype=bool)
        taken[chosen + controls] = True
        pool = np.flatnonzero(~taken)
        size = min(args.batch, args.budget - len(chosen) - len(controls))
        picks = pool[
            rank_pool(
                head.predict_proba(X[pool]),
                X[pool],
                strategy,
                batch_size=size,
                n_ranked=size,
                rng=rng,
                labeled_embeddings=X[labeled],
                labeled_counts=np.bincount(y[labeled], minlength=n_classes).astype(np.float64),
            )
        ]
        served, is_control = [], []
        for pick in picks:
            if rng.random() < args.control_share:
                control = int(rng.choice(np.flatnonzero(~taken)))
                taken[control] = True
                controls.append(control)
                served.append(control)
                is_control.append(True)
            else:
                taken[pick] = True
                chosen.append(int(pick))
                served.append(int(pick))
                is_control.append(False)
        probabilities = head.predict_proba(X[np.array(served)])
        confidence = probabilities.max(axis=1)
        right = probabilities.argmax(axis=1) == y[np.array(served)]
        for c, r, kind in zip(confidence, right, is_control, strict=True):
            history[kind][0].append(float(c))
            history[kind][1].append(bool(r))
            for policy, (for_picked, for_controls) in policies.items():
                limit = for_controls if kind else for_picked
                shown = limit is not None and c >= limit
                for key in (policy, f"{policy}:{'controls' if kind else 'picked'}"):
                    tally = tallies[key]
                    tally.served += 1
                    tally.shown += int(shown)
                    tally.right += int(shown and r)
    return tallies


if __name__ == "__main__":
    raise SystemExit(main())
