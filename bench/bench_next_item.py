"""Next item and submit, this checkout against an earlier revision, in one process.

On a noisy machine absolute latencies move from run to run; a ratio measured in the same
process, in interleaved blocks, does not. This seeds a PostgreSQL project the way
bench_retrain.py does (synthetic embeddings, 500 answers, a ranked queue), then one annotator
leases and answers items with `lease_next_item` / `submit_answer` from this checkout and from
`--against` (loaded from git into modules of their own), 25 rounds a block, alternating which
goes first, with a retrain rewriting the queue every fourth block as a live project would.

    .venv/bin/python bench/bench_next_item.py --against f925841
    .venv/bin/python bench/bench_next_item.py --against b206bbd --as-api
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench_retrain import _seed  # bench/ is on sys.path when run as a script
from harness import add_postgres_url, announce, git_source, migrated_database

BENCH_DATABASE = "sift_bench_next_item"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--blocks", type=int, default=12, help="blocks of 25 rounds per side")
    parser.add_argument("--database", default=BENCH_DATABASE, help="PostgreSQL database to use")
    parser.add_argument(
        "--as-api",
        action="store_true",
        help="serve as the API's next-item view does: the lease's expiry and the suggestion too",
    )
    add_postgres_url(parser)
    args = parser.parse_args()
    announce()
    seed_args = argparse.Namespace(items=args.items, labeled=500, retrain_every=10, annotators=1)
    with migrated_database("postgres", args.postgres_url, args.database):
        project_id, user_ids, _ = _seed(seed_args)
        results = _measure(args, project_id, user_ids[0])
    _report(args, results)
    return 0


def _measure(args: argparse.Namespace, project_id: int, user_id: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    import labeling.queue
    import labeling.services
    from labeling.models import Project
    from modeling.services.refresh import refresh_model

    old_queue = _module_at(args.against, "labeling/queue.py", "baseline_queue")
    old_services = _module_at(args.against, "labeling/services.py", "baseline_services")
    serve = _as_api if args.as_api else lambda queue: queue.lease_next_item
    sides: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        "this checkout": (serve(labeling.queue), labeling.services.submit_answer),
        args.against: (serve(old_queue), old_services.submit_answer),
    }
    for module in (labeling.queue, old_queue):
        vars(module)["_draw"] = lambda: 1.0  # no random-control draws: both serve the queue
    project = Project.objects.get(pk=project_id)
    project.retrain_every = 10**9  # in memory only: no retrain is requested by the answers
    annotator = get_user_model().objects.get(pk=user_id)
    label = labeling.services.resolve_labels(project, ["world"])
    timings: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in sides}
    for block in range(args.blocks * 2):
        if block % 4 == 0:
            refresh_model(project_id, run_id=f"bench-{block}")
        order = list(sides) if block % 2 == 0 else list(reversed(sides))
        for name in order:
            lease, submit = sides[name]
            leases, submits = timings[name]
            for _ in range(25):
                began = time.perf_counter()
                item = lease(project, annotator)
                leased = time.perf_counter()
                submit(project, annotator, item, label, seconds_spent=1.0)
                leases.append((leased - began) * 1000)
                submits.append((time.perf_counter() - leased) * 1000)
    return timings


def _as_api(queue: ModuleType) -> Callable[..., Any]:
    """What GET .../queue/next/ does with a queue module: lease, the lease's expiry, the
    suggestion (code before `lease_next` read the lease back)."""
    from labeling.models import Lease

    def serve(project: Any, annotator: Any) -> Any:
        if hasattr(queue, "lease_next"):
            lease = queue.lease_next(project, annotator)
        else:
            item = queue.lease_next_item(project, annotator)
            lease = Lease.objects.get(item=item, annotator=annotator)
        queue.suggestion_for(lease.item)
        return lease.item

    return serve


def _module_at(revision: str, path: str, name: str) -> ModuleType:
    """The file at `path` as it was at `revision`, imported as module `name`."""
    source = git_source(revision, path)
    folder = Path(tempfile.mkdtemp(prefix="sift-bench-"))
    (folder / f"{name}.py").write_text(source)
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} at {revision}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _report(args: argparse.Namespace, timings: dict[str, Any]) -> None:
    print(f"\n{args.items} items, 1 annotator, PostgreSQL, {args.blocks} blocks of 25 a side\n")
    print("| code | rounds | next-item p50 ms | next-item p99 ms | submit p50 ms | submit p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (leases, submits) in timings.items():
        print(
            f"| {name} | {len(leases)} | {statistics.median(leases):.1f} "
            f"| {_percentile(leases, 0.99):.1f} | {statistics.median(submits):.1f} "
            f"| {_percentile(submits, 0.99):.1f} |"
        )
    (new_leases, _), (old_leases, _) = timings.values()
    ratio = statistics.median(new_leases) / statistics.median(old_leases)
    print(f"\nnext-item p50, this checkout / {args.against}: {ratio:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
