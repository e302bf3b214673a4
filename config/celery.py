"""The Celery app; tasks live in each app's tasks.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("sift")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def yield_to_the_web_app() -> None:
    """Lower this process's CPU priority so training never slows annotators' requests.

    Workers and web processes often share machines; a retrain is background work, the next
    item is not. SIFT_WORKER_NICENESS (default 10, 0 to disable) is added to the niceness.
    """
    os.nice(int(os.environ.get("SIFT_WORKER_NICENESS", "10")))


@worker_process_init.connect
def _lower_priority(**kwargs: object) -> None:
    yield_to_the_web_app()


class ResumeRetrainsOnConnect(bootsteps.StartStopStep):
    """Each time the worker (re)connects to the broker, have the retrain requests that the
    broker may have lost while it was unreachable sent again."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, parent: Any) -> None:
        connected_at = datetime.now(UTC).isoformat()
        parent.app.send_task("modeling.tasks.resume_retrains", args=[connected_at])


app.steps["consumer"].add(ResumeRetrainsOnConnect)


@app.on_after_configure.connect
def _prepare_embedded_broker(sender: Celery, **kwargs: object) -> None:
    """The file-system broker needs its folders before the first message."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if key in options:
            Path(options[key]).mkdir(parents=True, exist_ok=True)
