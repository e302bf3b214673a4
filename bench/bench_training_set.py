"""Reading a project's training set, this checkout against an earlier revision, in one process.

Each retrain starts by reading every answer into the training set; since the final-label rule
moved to labeling/consensus.py the read orders answers by time to break ties as the export
does. This seeds a PostgreSQL project with two answers per answered item (overlap 2, so every
disagreement is a tie) and some rulings, then times `training_set` from this checkout and the
one at `--against` (its source read from git), interleaved, and says how many items the two
label differently (the ties the old rule broke in row order).

    .venv/bin/python bench/bench_training_set.py --against 32aa9a0
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np
from harness import (  # bench/ is on sys.path
    add_postgres_url,
    announce,
    git_source,
    migrated_database,
)

BENCH_DATABASE = "sift_bench_training_set"
OLD_NAMES = ("TrainingSet", "training_set", "_majority_labels")
OLD_PRELUDE = """
from __future__ import annotations
from collections import Counter, defaultdict
from dataclasses import dataclass
import numpy as np
import numpy.typing as npt
from django.db.models import QuerySet
from labeling.models import Adjudication, Annotation, Label, Project
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--answered", type=int, default=8_000, help="items with two answers")
    parser.add_argument("--repeats", type=int, default=15)
    add_postgres_url(parser)
    args = parser.parse_args()
    announce()
    with migrated_database("postgres", args.postgres_url, BENCH_DATABASE):
        project = _seed(args)
        _measure(args, project)
    return 0


def _old_training_set(revision: str) -> Callable[..., Any]:
    """`training_set` as it was at `revision`, from modeling/services.py there."""
    source = git_source(revision, "modeling/services.py")
    tree = ast.parse(source)
    wanted = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in OLD_NAMES
    ]
    module = types.ModuleType("baseline_training_set")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(OLD_PRELUDE + "\n\n".join(ast.unparse(node) for node in wanted), module.__dict__)
    function: Callable[..., Any] = module.training_set
    return function


def _seed(args: argparse.Namespace) -> Any:
    from django.contrib.auth import get_user_model

    from labeling.models import Adjudication, Annotation, Item, Project, Role, content_hash

    rng = np.random.default_rng(0)
    users = get_user_model()
    bob, dora, rita = (users.objects.create(username=name) for name in ("bob", "dora", "rita"))
    project = Project.objects.create(name="Training-set bench", overlap=2)
    project.set_labels(["world", "sports", "business", "science"])
    for user, role in ((bob, Role.ANNOTATOR), (dora, Role.ANNOTATOR), (rita, Role.REVIEWER)):
        project.add_member(user, role)
    labels = list(project.labels.all())
    texts = [f"item {n}" for n in range(args.items)]
    items = Item.objects.bulk_create(
        [Item(project=project, text=text, content_hash=content_hash(text)) for text in texts],
        batch_size=5000,
    )
    answered = rng.choice(len(items), size=args.answered, replace=False)
    # auto_now stamps each answer as it is created, so the second of a pair is the later one.
    annotations, choices = [], []
    for n, row in enumerate(answered.tolist()):
        first, second = (bob, dora) if n % 2 else (dora, bob)
        for user in (first, second):
            annotations.append(Annotation(item=items[row], annotator=user))
            choices.append(int(rng.integers(len(labels))))
    stored = Annotation.objects.bulk_create(annotations, batch_size=5000)
    through = Annotation.labels.through
    through.objects.bulk_create(
        [
            through(annotation_id=annotation.pk, label_id=labels[choice].pk)
            for annotation, choice in zip(stored, choices, strict=True)
        ],
        batch_size=5000,
    )
    Item.objects.filter(pk__in=[items[row].pk for row in answered.tolist()]).update(answer_count=2)
    for row in answered[: len(answered) // 20].tolist():
        ruling = Adjudication.objects.create(item=items[row], resolved_by=rita)
        ruling.labels.set([labels[int(rng.integers(len(labels)))]])
    return project


def _measure(args: argparse.Namespace, project: Any) -> None:
    from modeling.services.training_data import training_set

    old = _old_training_set(args.against)
    labels = list(project.labels.all())
    sides = {"this checkout": training_set, args.against: old}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    results: dict[str, Any] = {}
    for repeat in range(args.repeats):
        order = list(sides) if repeat % 2 == 0 else list(sides)[::-1]
        for name in order:
            started = time.perf_counter()
            results[name] = sides[name](project, labels)
            seconds[name].append(time.perf_counter() - started)
    new, baseline = results["this checkout"], results[args.against]
    assert new.item_ids == baseline.item_ids, "both sides read the same items"
    differ = int(np.sum(np.asarray(new.targets) != np.asarray(baseline.targets)))
    print(f"{len(new.item_ids)} items in the training set, two answers each")
    for name, taken in seconds.items():
        print(
            f"{name:>14}: median {statistics.median(taken) * 1000:7.1f} ms, "
            f"min {min(taken) * 1000:7.1f} ms over {len(taken)} reads"
        )
    ratio = statistics.median(seconds["this checkout"]) / statistics.median(seconds[args.against])
    print(f"ratio this checkout / {args.against}: {ratio:.2f}")
    print(f"items labeled differently (ties the old rule broke in row order): {differ}")


if __name__ == "__main__":
    raise SystemExit(main())
