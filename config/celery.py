"""The Celery app; tasks live in each app's tasks.py."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery, Task, bootsteps
from celery.signals import worker_process_init
from kombu.exceptions import OperationalError as BrokerError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("sift")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

log = logging.getLogger(__name__)


def enqueue(
    task: str | Task,
    *args: Any,
    on_broker_down: Callable[[Exception], object],
    task_id: str | None = None,
) -> bool:
    """Send a task, by name or object; False, after `on_broker_down` recorded why, when the
    broker cannot be reached.

    The one guard for every enqueue: a dead broker never fails the request that asked for the
    work, and says so where a person will look. The web side sends worker tasks by name, so
    it never imports the worker's code (nor torch).
    """
    try:
        if isinstance(task, str):
            app.send_task(task, args=args, task_id=task_id)
        elif task_id is None:
            task.delay(*args)
        else:
            task.apply_async(args, task_id=task_id)
    except (BrokerError, OSError) as exc:
        log.warning("Could not reach the task broker for %s%s: %s", task, args, exc)
        on_broker_down(exc)
        return False
    return True


def broker_down_message(exc: Exception) -> str:
    return f"The task broker could not be reached: {exc}"


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


class SweepLostRetrains(bootsteps.StartStopStep):
    """Every SIFT_SWEEP_SECONDS (15), have lost retrains sent again: a run whose worker died
    (no heartbeat for 10 s), and a request no run took up for five minutes. With the step
    above, a lost retrain resumes within a minute whatever the broker did, even when the
    broker restarted empty and no message is left to redeliver. The same sweep sends again
    the scoring shards of a fine-tuned version whose worker died or whose message was lost."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.timer_entry: Any = None

    def start(self, worker: Any) -> None:
        seconds = float(os.environ.get("SIFT_SWEEP_SECONDS", "15"))
        self.timer_entry = worker.timer.call_repeatedly(seconds, self.sweep, (worker,))

    def stop(self, worker: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()

    def sweep(self, worker: Any) -> None:
        try:
            worker.app.send_task("modeling.tasks.resume_retrains")
        except (BrokerError, OSError) as exc:
            log.warning("Could not send the sweep for lost retrains: %s", exc)


app.steps["consumer"].add(ResumeRetrainsOnConnect)
app.steps["worker"].add(SweepLostRetrains)


@app.on_after_configure.connect
def _prepare_embedded_broker(sender: Celery, **kwargs: object) -> None:
    """The file-system broker needs its folders before the first message."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if key in options:
            Path(options[key]).mkdir(parents=True, exist_ok=True)
