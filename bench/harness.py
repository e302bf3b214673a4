"""What every benchmark needs: a throwaway database per backend, Django set up on it."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


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
