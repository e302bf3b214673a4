"""What every benchmark needs: a throwaway database per backend, Django set up on it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
MAINTENANCE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("postgres", "sqlite")  # what fresh_database creates

R = TypeVar("R")
T = TypeVar("T")


def announce() -> str:
    """Print the command line this benchmark runs as (stdout line-buffered) and return it."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    command = f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}"
    print(command)
    return command


def add_postgres_url(parser: argparse.ArgumentParser) -> None:
    """The `--postgres-url` option every database benchmark takes."""
    parser.add_argument(
        "--postgres-url",
        default=MAINTENANCE_URL,
        help="maintenance database used to create and drop the bench database",
    )


@contextmanager
def fresh_database(
    backend: str, postgres_url: str, name: str, *, keep: bool = False
) -> Iterator[str]:
    """Yield the URL of an empty database (`sqlite` or `postgres`), removed afterwards unless
    ``keep`` (PostgreSQL only: a look at what the benchmark left)."""
    with tempfile.TemporaryDirectory(prefix="sift-bench-") as directory:
        os.environ["SIFT_VAR_DIR"] = directory
        if backend == "sqlite":
            yield f"sqlite:///{directory}/bench.sqlite3"
            return
        import psycopg

        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {name}")
        base, _, _ = postgres_url.rpartition("/")
        try:
            yield f"{base}/{name}"
        finally:
            if not keep:
                with psycopg.connect(postgres_url, autocommit=True) as admin:
                    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def setup_django(database_url: str) -> None:
    """Point Django at the benchmark's database and start it."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="bench-only-secret",
        DEBUG="0",
        DATABASE_URL=database_url,
        LOG_LEVEL="WARNING",
    )
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import django

    django.setup()


@contextmanager
def migrated_database(
    backend: str, postgres_url: str, name: str, *, keep: bool = False
) -> Iterator[str]:
    """`fresh_database`, with Django set up on it and migrated; connections closed at the end."""
    with fresh_database(backend, postgres_url, name, keep=keep) as database_url:
        setup_django(database_url)
        from django.core.management import call_command
        from django.db import connections

        try:
            call_command("migrate", interactive=False, verbosity=0)
            yield database_url
        finally:
            connections.close_all()


def run_backends(
    args: argparse.Namespace,
    run_backend: Callable[[argparse.Namespace], R],
    *,
    parse: Callable[[Any], R],
    failed: Callable[[str, str], R],
    report: Callable[[list[R]], None],
) -> int:
    """The `main` of a benchmark measured on each backend: announce it, run it, report; the
    exit status.

    With `--backend` it runs that one here (with `--json` it prints the result as JSON instead
    of reporting it). Without, it runs this script again with its options and `--backend B
    --json` for each of BACKENDS, each in a subprocess of its own, since Django's settings are
    fixed per process: the child prints its command line first and its result last, and the
    lines between are echoed. `parse` turns that JSON into a result, `failed(backend, why)`
    stands in for a child that printed none. Results are dataclasses with a `failures` list.
    """
    announce()
    if args.backend:
        result = run_backend(args)
        if args.json:
            print(json.dumps(dataclasses.asdict(result)))  # type: ignore[call-overload]
        else:
            report([result])
        return 1 if result.failures else 0  # type: ignore[attr-defined]

    results = []
    for backend in BACKENDS:
        command = [sys.executable, sys.argv[0], *sys.argv[1:], "--backend", backend, "--json"]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        lines = done.stdout.strip().splitlines()
        for line in lines[1:-1]:
            print(line)
        try:
            results.append(parse(json.loads(lines[-1])))
        except (IndexError, json.JSONDecodeError, TypeError, KeyError):
            results.append(failed(backend, f"subprocess exited {done.returncode} without a result"))
    report(results)
    return 1 if any(result.failures for result in results) else 0  # type: ignore[attr-defined]


def start_annotators(
    annotate: Callable[[T, int], None], annotators: Sequence[T], *, daemon: bool = False
) -> list[threading.Thread]:
    """A started thread per annotator, running `annotate(annotator, n)`."""
    threads = [
        threading.Thread(target=annotate, args=(annotator, n), name=f"annotator-{n}", daemon=daemon)
        for n, annotator in enumerate(annotators)
    ]
    for thread in threads:
        thread.start()
    return threads


def git_source(revision: str, path: str) -> str:
    """The text of `path` as it was at git `revision` of this repository."""
    return subprocess.run(
        ["git", "show", f"{revision}:{path}"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def percentile(samples: list[float], percent: int) -> float | None:
    """The `percent`-th percentile (inclusive method); None when there are no samples."""
    if len(samples) < 2:
        return samples[0] if samples else None
    return statistics.quantiles(samples, n=100, method="inclusive")[percent - 1]


def format_ms(value: float | None) -> str:
    """A latency for a table: one decimal, `-` when there is none."""
    return "-" if value is None else f"{value:.1f}"
