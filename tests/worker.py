"""A real Celery worker process for integration stories, on the test database and broker."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

from config.celery import app
from tests.servers import running_celery_worker, wait_for

__all__ = ["database_url_for_processes", "env_for_processes", "running_worker", "wait_for"]


def database_url_for_processes() -> str:
    """The URL of the database this test run uses, for processes started by a test."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def env_for_processes(**overrides: str) -> dict[str, str]:
    """What a process started by a test needs to share this run's database, broker and files."""
    return {
        "DATABASE_URL": database_url_for_processes(),
        "REDIS_URL": settings.REDIS_URL,
        "SIFT_VAR_DIR": str(settings.VAR_DIR),
        "SECRET_KEY": settings.SECRET_KEY,
        # The story's own cache keys (tests/conftest.py gives each story a prefix).
        "SIFT_CACHE_PREFIX": str(settings.CACHES["default"].get("KEY_PREFIX", "")),
        # As in this process (tests/conftest.py): only the stories about it fine-tune by themselves.
        "SIFT_AUTO_FINETUNE": "1" if settings.SIFT_AUTO_FINETUNE else "0",
        "SIFT_ENCODER_PRECISION": settings.SIFT_ENCODER_PRECISION,
        **overrides,
    }


@contextmanager
def running_worker(
    log_path: Path,
    *,
    queues: str | None = None,
    extra_env: dict[str, str] | None = None,
    purge: bool = True,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `celery worker` as its own process and stop it afterwards.

    `queues` limits what it consumes (e.g. "gpu"); `purge=False` keeps messages left by a
    worker that was killed, so a second worker can take them over.
    """
    if purge:
        app.control.purge()
    name = f"test-{uuid.uuid4().hex[:8]}@localhost"
    env = env_for_processes(**(extra_env or {}))
    queue_args = ["-Q", queues] if queues else []
    with running_celery_worker(env, log_path, options=["-n", name, *queue_args]) as process:
        yield process
