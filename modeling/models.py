"""What the workers keep per project: embeddings, model versions, and the live model state."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from config.celery import broker_down_message, enqueue
from labeling.models import Project
from modeling.metrics import VersionMetrics

# A run that has not finished after this long is taken to be dead and may be replaced.
STALE_RUN_SECONDS = 30 * 60


class EmbeddingChunk(models.Model):
    """Embeddings of up to a few thousand items, stored as one blob any worker can read."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    encoder = models.CharField(max_length=200)
    item_ids = models.BinaryField()
    vectors = models.BinaryField()
    size = models.PositiveIntegerField()
    dimension = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "encoder"], name="embedding_chunks")]

    def __str__(self) -> str:
        return f"{self.size} x {self.dimension} ({self.encoder}) for project {self.project_id}"

    @classmethod
    def pack(
        cls, project: Project, encoder: str, ids: list[int], vectors: npt.NDArray[np.float32]
    ) -> EmbeddingChunk:
        matrix = np.ascontiguousarray(vectors, dtype="<f4")
        return cls(
            project=project,
            encoder=encoder,
            item_ids=np.asarray(ids, dtype="<i8").tobytes(),
            vectors=matrix.tobytes(),
            size=len(ids),
            dimension=matrix.shape[1],
        )

    def unpack(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        ids = np.frombuffer(bytes(self.item_ids), dtype="<i8")
        vectors = np.frombuffer(bytes(self.vectors), dtype="<f4").reshape(self.size, -1)
        return ids, vectors


class ModelVersion(models.Model):
    """One trained model of a project and what it cost."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, default="head")
    encoder = models.CharField(max_length=200)
    strategy = models.CharField(max_length=40)
    labels_used = models.PositiveIntegerField()
    class_counts = models.JSONField(default=dict)
    # When the labels it learned from were read; a run from older labels never replaces it.
    snapshot_at = models.DateTimeField()
    pool_size = models.PositiveIntegerField(default=0)
    train_seconds = models.FloatField(default=0)
    score_seconds = models.FloatField(default=0)
    device = models.CharField(max_length=40, default="cpu")
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # A head version ranks the queue as soon as it exists; a fine-tuned one only once promoted
    # (its evaluation was not worse than the serving version's, or a lead forced it).
    promoted = models.BooleanField(default=True)
    # Measured by the fine-tuning loop; null for the head, whose cost is estimated from time.
    samples_per_second = models.FloatField(null=True, blank=True)
    peak_memory_bytes = models.BigIntegerField(null=True, blank=True)
    energy_wh = models.FloatField(null=True, blank=True)
    energy_source = models.CharField(max_length=20, blank=True)
    cost = models.FloatField(null=True, blank=True)
    # The fine-tuned weights, under SIFT_CHECKPOINT_DIR (storage every worker can reach).
    weights_path = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="unique_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.project} v{self.number} ({self.kind}, {self.labels_used} labels)"

    def stored_metrics(self) -> VersionMetrics:
        """The metrics the worker stored, typed (see modeling/metrics.py)."""
        metrics: VersionMetrics = self.metrics
        return metrics


class FineTuneRun(models.Model):
    """One fine-tuning job: its claim by a worker, its progress, and where it checkpoints."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="finetune_runs")
    # The Celery task id: a redelivered task finds its run (and its checkpoints) by it.
    task_id = models.CharField(max_length=100, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    resumed_from_step = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    last_error = models.TextField(blank=True)
    # The labels it learns from, fixed at the first attempt so that a resumed run sees the same.
    snapshot_at = models.DateTimeField(null=True, blank=True)
    item_ids = models.JSONField(default=list, blank=True)
    targets = models.JSONField(default=list, blank=True)
    warm_start_version = models.PositiveIntegerField(null=True, blank=True)
    version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"fine-tune {self.task_id} of {self.project}: {self.status}"

    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    def progress_percent(self) -> float:
        return 100.0 * self.step / self.total_steps if self.total_steps else 0.0


class Phase(models.TextChoices):
    IDLE = "idle", "Idle"
    EMBEDDING = "embedding", "Embedding items"
    TRAINING = "training", "Training"
    SCORING = "scoring", "Scoring the pool"


REFRESH_MODEL = "modeling.tasks.refresh_model"
# A retrain request younger than this is taken to be still waiting for a worker.
QUEUED_PATIENCE = timedelta(minutes=5)
# After the broker refused a request, answers in the next half minute do not try again, so a
# dead broker costs one slow request, not every request.
BROKER_RETRY_AFTER = timedelta(seconds=30)


class ModelStateManager(models.Manager["ModelState"]):
    """The per-project lock and run bookkeeping that the web side and the workers share."""

    def of(self, project: Project) -> ModelState:
        """The project's model state, created on first use."""
        state, _ = self.get_or_create(project=project)
        return state

    def locked(self, project: Project) -> ModelState:
        """The model state row, locked until the surrounding transaction ends."""
        self.of(project)
        return self.select_for_update().get(project=project)

    def claim(self, project: Project, run_id: str) -> bool:
        """Take the project's retrain for run `run_id`; False, leaving a follow-up request,
        when another run is alive. A redelivered task (same run id) takes over its run."""
        with transaction.atomic():
            state = self.locked(project)
            if state.is_running() and state.run_id != run_id:
                state.follow_up = True
                state.save(update_fields=["follow_up", "updated_at"])
                return False
            state.running_since = timezone.now()
            state.run_id = run_id
            state.queued_at = None
            state.follow_up = False
            state.last_error = ""
            state.save()
            return True

    def release(self, project: Project) -> bool:
        """End the project's run; True when requests arrived meanwhile, which are then marked
        as sent for the follow-up run the caller sends."""
        with transaction.atomic():
            state = self.locked(project)
            follow_up = state.follow_up
            state.running_since = None
            state.run_id = ""
            state.follow_up = False
            state.phase = Phase.IDLE
            state.queued_at = timezone.now() if follow_up else state.queued_at
            state.save()
            return follow_up

    def send_retrain(self, project_id: int) -> bool:
        """Send one retrain request (it was stamped already); a broker that refuses it is
        shown to leads, and a request in half a minute tries again."""
        return enqueue(
            REFRESH_MODEL,
            project_id,
            on_broker_down=lambda exc: self.filter(project_id=project_id).update(
                queued_at=timezone.now() - QUEUED_PATIENCE + BROKER_RETRY_AFTER,
                last_error=broker_down_message(exc),
            ),
        )

    def take_lost_requests(self, requested_before: datetime) -> list[int]:
        """Projects whose retrain request from before `requested_before` no run took up,
        stamped anew so that workers reconnecting together send each once."""
        taken = []
        with transaction.atomic():
            waiting = self.select_for_update(skip_locked=True).filter(
                queued_at__lt=requested_before
            )
            for state in waiting:
                if state.is_running():
                    continue  # the run ends by taking up its follow-up requests
                state.queued_at = timezone.now()
                state.save(update_fields=["queued_at", "updated_at"])
                taken.append(state.project_id)
        return taken


class ModelState(models.Model):
    """What the workers are doing for a project right now, for the status panel and the lock."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="model_state")
    phase = models.CharField(max_length=20, choices=Phase.choices, default=Phase.IDLE)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    running_since = models.DateTimeField(null=True, blank=True)
    run_id = models.CharField(max_length=100, blank=True)
    follow_up = models.BooleanField(default=False)
    queue_refreshed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ModelStateManager()

    def __str__(self) -> str:
        return f"{self.project}: {self.phase}"

    def is_running(self) -> bool:
        if self.running_since is None:
            return False
        return (timezone.now() - self.running_since).total_seconds() < STALE_RUN_SECONDS

    def covers_new_request(self, now: datetime) -> bool:
        """A follow-up of the running run, or a request sent recently, will cover a new one."""
        if self.is_running():
            return self.follow_up
        return self.queued_at is not None and now - self.queued_at < QUEUED_PATIENCE

    def progress_percent(self) -> float:
        if not self.progress_total:
            return 0.0
        return 100.0 * self.progress_done / self.progress_total
