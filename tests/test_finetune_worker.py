"""A fine-tune survives its worker being killed: another worker resumes from the checkpoint.

A real Celery worker process on the real broker fine-tunes MiniLM on 40 labels; the test
SIGKILLs it (its pool child too) once a checkpoint is on disk, starts a second worker, and
checks that the run went on from that checkpoint's step rather than from the start.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from labeling.models import Role
from modeling.core.checkpoints import CHECKPOINT_NAME, load
from modeling.models import FineTuneRun, ModelVersion
from modeling.scheduling import request_finetune
from tests.conftest import label, make_topics_project, make_user, topic_of
from tests.worker import running_worker, wait_for


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return children + [grandchild for child in children for grandchild in _descendants(child)]


def _kill_with_children(pid: int) -> None:
    """SIGKILL, as the OOM killer or a lost machine would: no cleanup, no acknowledgement."""
    for victim in [*_descendants(pid), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_s_fine_tune_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    project = make_topics_project(alice, (bob, Role.ANNOTATOR), per_topic=20)
    for item in project.items.order_by("pk"):
        label(project, bob, item, topic_of(item))
    checkpoints = tmp_path / "checkpoints"
    env = {
        "SIFT_CHECKPOINT_DIR": str(checkpoints),
        "SIFT_TRAINING_DEVICE": "cpu",
        # 40 labels in micro-batches of 4, 32 per step: 2 steps per epoch, 8 in all, and a
        # checkpoint after every second step.
        "SIFT_FINETUNE_EPOCHS": "4",
        "SIFT_FINETUNE_BATCH_SIZE": "4",
        "SIFT_FINETUNE_MAX_LENGTH": "32",
        "SIFT_FINETUNE_CHECKPOINT_STEPS": "2",
        "SIFT_FINETUNE_MIN_STEPS": "0",
        # Redis hands an unacknowledged task to another worker after this many seconds.
        "SIFT_BROKER_VISIBILITY_TIMEOUT": "5",
        "OMP_NUM_THREADS": "1",
    }

    with running_worker(tmp_path / "first.log", queues="gpu", extra_env=env) as first:
        run = request_finetune(project, alice)
        assert run is not None
        checkpoint = checkpoints / f"project-{project.pk}" / f"run-{run.task_id}" / CHECKPOINT_NAME
        wait_for(checkpoint.exists, timeout=300, what="the first checkpoint")
        _kill_with_children(first.pid)
        first.wait()
    saved = load(checkpoint)
    assert saved is not None
    killed_at = int(saved["state"]["step"])
    assert 0 < killed_at < 8
    assert not ModelVersion.objects.filter(project=project).exists()  # it died mid-run
    assert FineTuneRun.objects.get(pk=run.pk).status == FineTuneRun.Status.RUNNING

    second_log = tmp_path / "second.log"
    with running_worker(second_log, queues="gpu", extra_env=env, purge=False):
        wait_for(
            lambda: FineTuneRun.objects.get(pk=run.pk).status == FineTuneRun.Status.DONE,
            timeout=300,
            what="the second worker to finish the fine-tune",
        )

    run.refresh_from_db()
    assert run.attempts == 2
    assert run.resumed_from_step >= killed_at  # not from the start
    assert f"Resuming fine-tuning from step {run.resumed_from_step}" in second_log.read_text()
    version = ModelVersion.objects.get(project=project)
    assert run.version == version
    assert version.kind == "finetune"
    assert version.labels_used == 40
    assert version.metrics["training"]["steps"] == 8
    assert version.metrics["training"]["resumed_from_step"] == run.resumed_from_step
    assert not checkpoint.exists()  # a finished run keeps its weights, not its checkpoints
    assert Path(version.weights_path).is_file()
